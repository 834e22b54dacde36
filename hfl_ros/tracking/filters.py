"""Online (causal) filters of one track's pose: Euclidean points plus rotations filtered on SO(3).

A pose is a block of points (N, 3) (a hand's joints and mesh vertices, or an object's translation) and a
block of rotations (M, 3, 3) (a hand's wrist and MANO joint rotations, or an object's rotation). Rotations
are filtered in the tangent space at the current estimate: the residual ``log(R_pred^T R_meas)`` is scaled
and mapped back with ``exp``, so a rotation is never averaged component-wise.

Modes:

- ``one_euro``: the 1€ filter (Casiez et al. 2012): a low-pass whose cut-off rises with the speed;
- ``constant_velocity``: an alpha-beta (steady-state constant-velocity Kalman) filter: it predicts with the
  estimated velocity, so a steady motion is followed without lag;
- ``none``: no filtering.

All points of one pose share one gain per frame, so any fixed linear relation between them (the MANO joints
are a linear function of the mesh vertices) holds after filtering too.

A gate rejects a measurement whose residual to the prediction exceeds a translation or rotation threshold
(for example a PnP flip to a symmetric pose); after ``gate_max_rejections`` rejections in a row the filter
accepts the new pose (a real jump) and restarts from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle

FILTER_MODES = ("none", "one_euro", "constant_velocity")


@dataclass
class FilterConfig:
    """Parameters of the online filter (the node's ``temporal_filter`` and ``filter_*`` parameters)."""

    mode: str = "constant_velocity"
    #: 1€: cut-off at rest (Hz), its rise per unit speed (s/m; s/rad for rotations), derivative cut-off.
    min_cutoff: float = 1.5
    beta: float = 20.0
    rotation_beta: float = 1.0
    d_cutoff: float = 1.0
    #: constant velocity: share of the residual added to the position, and (per frame) to the velocity.
    position_gain: float = 0.4
    velocity_gain: float = 0.15
    #: Gate: a residual beyond these (to the first point / first rotation) is a jump, not motion.
    gate_translation_m: float = 0.1
    gate_rotation_rad: float = 1.0
    gate_max_rejections: int = 3
    #: A track unseen for longer than this restarts its filter from the next measurement.
    restart_gap_s: float = 0.25

    def validate(self) -> FilterConfig:
        if self.mode not in FILTER_MODES:
            raise ValueError(f"temporal filter must be one of {', '.join(FILTER_MODES)}, got {self.mode!r}")
        positive = ("min_cutoff", "d_cutoff", "gate_translation_m", "gate_rotation_rad", "restart_gap_s")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("beta", "rotation_beta"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (0 < self.position_gain <= 1 and 0 <= self.velocity_gain < 2):
            raise ValueError("position_gain must be in (0, 1] and velocity_gain in [0, 2)")
        if self.gate_max_rejections < 1:
            raise ValueError(f"gate_max_rejections must be >= 1, got {self.gate_max_rejections}")
        return self


def smoothing_factor(cutoff_hz: float, dt: float) -> float:
    """The smoothing factor of a first-order low-pass with this cut-off, for a step of dt seconds."""
    tau = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt)


def so3_log_residual(R_from: np.ndarray, R_to: np.ndarray) -> np.ndarray:
    """Body-frame tangent vectors (M, 3) taking R_from to R_to: log(R_from^T R_to)."""
    return matrix_to_axis_angle(np.swapaxes(R_from, -1, -2) @ R_to)


def _rms_norm(vectors: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.einsum("...i,...i->...", vectors, vectors)))) if vectors.size else 0.0


class PoseFilter:
    """The causal filter of one track; ``update`` takes one measurement and returns the filtered pose."""

    def __init__(self, config: FilterConfig, *, shared_gain: bool = False) -> None:
        """``shared_gain``: rotations use the points' 1€ gain (a hand, whose mesh must follow its joints)."""
        self.config = config
        self.shared_gain = shared_gain
        self.rejections = 0  # measurements rejected by the gate, in total
        self._streak = 0
        self._t: float | None = None
        self._x = self._v = self._R = self._w = None
        self._dx = self._dw = None

    @property
    def initialised(self) -> bool:
        return self._t is not None

    def reset(self) -> None:
        self._t = None
        self._streak = 0

    def _restart(self, t: float, points: np.ndarray, rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._t, self._streak = t, 0
        self._x, self._R = points.copy(), rotations.copy()
        self._v, self._w = np.zeros_like(points), np.zeros(rotations.shape[:-1])
        self._dx, self._dw = np.zeros_like(points), np.zeros(rotations.shape[:-1])
        return points.copy(), rotations.copy()

    def update(
        self, t: float, points: np.ndarray, rotations: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """One measurement at time t (s): points (N, 3), rotations (M, 3, 3) -> (points, rotations, accepted).

        ``accepted`` is False when the gate rejected the measurement; the prediction is returned instead.
        """
        return update_filters([self], t, [points], [rotations])[0]


def _exp_all(blocks: list[np.ndarray]) -> list[np.ndarray]:
    """exp of several (M_i, 3) tangent blocks in one call (per-call numpy overhead dominates at this size)."""
    sizes = [len(b) for b in blocks]
    if not sum(sizes):
        return [np.zeros((0, 3, 3)) for _ in blocks]
    return np.split(axis_angle_to_matrix(np.concatenate(blocks)), np.cumsum(sizes)[:-1])


def update_filters(
    filters: Sequence[PoseFilter], t: float, points: Sequence[np.ndarray], rotations: Sequence[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """:meth:`PoseFilter.update` of several filters at one time t, with the rotation maps batched."""
    out: list[tuple[np.ndarray, np.ndarray, bool] | None] = [None] * len(filters)
    active: list[tuple[int, PoseFilter, np.ndarray, np.ndarray, float]] = []
    for i, (f, z, Z) in enumerate(zip(filters, points, rotations, strict=True)):
        z, Z = np.asarray(z, dtype=np.float64), np.asarray(Z, dtype=np.float64).reshape(-1, 3, 3)
        if f.config.mode == "none":
            out[i] = (z, Z, True)
        elif (
            f._t is None
            or f._x.shape != z.shape
            or f._R.shape != Z.shape
            or t - f._t > f.config.restart_gap_s
        ):
            out[i] = (*f._restart(t, z, Z), True)
        else:
            active.append((i, f, z, Z, max(t - f._t, 1e-6)))
            f._t = t
    if not active:
        return out  # type: ignore[return-value]
    # Prediction: constant velocity moves the pose on; the 1€ filter predicts no change.
    cv = [f.config.mode == "constant_velocity" for _, f, _, _, _ in active]
    steps = _exp_all(
        [f._w * dt if is_cv else np.zeros((0, 3)) for (_, f, _, _, dt), is_cv in zip(active, cv)]
    )
    R_pred = [f._R @ step if is_cv else f._R for (_, f, _, _, _), step, is_cv in zip(active, steps, cv)]
    x_pred = [f._x + f._v * dt if is_cv else f._x for (_, f, _, _, dt), is_cv in zip(active, cv)]
    sizes = [len(Z) for _, _, _, Z, _ in active]
    r_R_all = (
        so3_log_residual(np.concatenate(R_pred), np.concatenate([Z for _, _, _, Z, _ in active]))
        if sum(sizes)
        else np.zeros((0, 3))
    )
    r_Rs = np.split(r_R_all, np.cumsum(sizes)[:-1])
    tangents: list[np.ndarray] = []
    for (i, f, z, Z, dt), is_cv, xp, Rp, r_R in zip(active, cv, x_pred, R_pred, r_Rs):
        cfg = f.config
        r_x = z - xp
        jump = (r_x.size and np.linalg.norm(r_x[0]) > cfg.gate_translation_m) or (
            r_R.size and np.linalg.norm(r_R[0]) > cfg.gate_rotation_rad
        )
        if jump:
            f.rejections += 1
            f._streak += 1
            if f._streak >= cfg.gate_max_rejections:
                out[i] = (*f._restart(t, z, Z), True)
            else:
                f._x, f._R = xp, Rp
                out[i] = (xp.copy(), Rp.copy(), False)
            tangents.append(np.zeros((0, 3)))
            continue
        f._streak = 0
        if is_cv:
            a_x = a_R = cfg.position_gain
            f._v = f._v + (cfg.velocity_gain / dt) * r_x
            f._w = f._w + (cfg.velocity_gain / dt) * r_R
        else:  # 1€: the speed is the low-passed rate of change; the cut-off rises with it
            a_d = smoothing_factor(cfg.d_cutoff, dt)
            f._dx = f._dx + a_d * (r_x / dt - f._dx)
            a_x = smoothing_factor(cfg.min_cutoff + cfg.beta * _rms_norm(f._dx), dt)
            f._dw = f._dw + a_d * (r_R / dt - f._dw)
            a_R = (
                a_x
                if f.shared_gain
                else smoothing_factor(cfg.min_cutoff + cfg.rotation_beta * _rms_norm(f._dw), dt)
            )
        f._x = xp + a_x * r_x
        f._R = Rp
        tangents.append(a_R * r_R)
    for (i, f, _, _, _), step in zip(active, _exp_all(tangents)):
        if out[i] is None:
            f._R = f._R @ step
            out[i] = (f._x.copy(), f._R.copy(), True)
    return out  # type: ignore[return-value]

"""A procedurally built stand-in hand model in the MANO file layout. It is NOT MANO.

MANO's model files cannot be redistributed, so tests and demos use this stand-in instead: a right (or mirrored
left) hand mesh with MANO's vertex and face counts, MANO's 16-joint kinematic tree, MANO's fingertip vertex
indices and the same pickle keys and array shapes. Its geometry, skinning, shape and pose blend shapes and
pose PCA are made up here; results computed with it say nothing about MANO or about a trained network's
accuracy.

Construction: the palm is the surface of a subdivided box (rounded, tapered, with an arched knuckle line)
with an open wrist; each finger is a tube of 8-vertex rings extruded from a 2×2 patch of the box and closed
by an apex vertex that is the fingertip. The surface is a single sheet whose only boundary is the 16-edge
wrist opening, which makes the counts come out at exactly 778 vertices and 1538 triangles.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..hand_joints import MANO_KINTREE_PARENTS, NUM_FACES, NUM_VERTICES

# Local hand frame used while building: u from the wrist towards the fingers, v towards the thumb (radial),
# w out of the back of the hand (dorsal). (u, v, w) is right-handed for a right hand.
# World frame, as in MANO's template: fingers along -x, back of the hand +y, thumb side +z.
_LOCAL_TO_WORLD = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
# Puts the wrist near (0.095, 0.006, 0.006) m (not at the origin) and the palm around it, as in MANO.
_WORLD_OFFSET = np.array([0.095, 0.006, 0.006])

# Palm lattice: cells along u, v, w. The palm is the box surface minus the patches below.
_CELLS = (12, 11, 4)
_PALM_LENGTH = 0.094
_PALM_HALF_WIDTH = 0.042  # at the knuckles; the wrist end is narrower
_PALM_WRIST_HALF_WIDTH = 0.031
_PALM_HALF_THICKNESS = 0.013
_PALM_START_U = -0.012
_ROUNDING = np.array([0.006, 0.011, 0.009])  # edge rounding radii along (u, v, w)
_KNUCKLE_ARCH = 9.0  # distal edge recedes by _KNUCKLE_ARCH * (v - 0.005)² metres
_WRIST_HOLE = ((0, 0), (3, 8), (1, 4))  # (axis, side), v cells, w cells: 5×3 cells -> 16 boundary edges
_RING_SIZE = 8
_BASE_GAP = 0.008  # first finger ring (at the knuckle joint) sits this far beyond its palm patch

_SPREAD_SIGN = {"thumb": 0.6, "index": 1.0, "middle": 0.2, "ring": -0.5, "little": -1.0}


#: A patch of palm-box cells: ((axis, side) of the box face, cell range along the face's first axis, along
#: its second axis), the face axes being (axis + 1) % 3 and (axis + 2) % 3.
Patch = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class _Digit:
    name: str
    joints: tuple[int, int, int]  # MANO kinematic joint ids, proximal to distal
    tip_vertex: int  # MANO's fingertip vertex index
    patch: Patch  # the 2×2 cells of the palm box the digit grows from
    lengths: tuple[float, float, float]  # joint to joint to tip, metres
    directions: tuple[tuple[float, float, float], ...]  # local direction of each of the three bones
    radius_base: tuple[float, float]  # ring half-width, half-height at the first joint
    radius_tip: tuple[float, float]
    rings: tuple[tuple[int, float], ...]  # (bone, fraction along it) of each ring; the first 3 joint rings
    nail: tuple[float, float, float]  # reference "up" direction of the ring frames


def _finger_directions(spread: float, flexion: tuple[float, float, float]) -> tuple[tuple[float, ...], ...]:
    base = np.array([np.cos(spread), np.sin(spread), 0.0])
    return tuple(tuple(np.cos(f) * base + np.sin(f) * np.array([0.0, 0.0, -1.0])) for f in np.cumsum(flexion))


_RINGS_8 = ((0, 0.0), (0, 0.33), (0, 0.67), (1, 0.0), (1, 0.5), (2, 0.0), (2, 0.5), (2, 0.82))
_RINGS_9 = ((0, 0.0), (0, 0.33), (0, 0.67), (1, 0.0), (1, 0.33), (1, 0.67), (2, 0.0), (2, 0.5), (2, 0.82))
_FLEX = (0.05, 0.10, 0.10)

_DIGITS = (
    _Digit(
        name="thumb", joints=(13, 14, 15), tip_vertex=745, patch=((1, 1), (1, 3), (2, 4)),
        lengths=(0.036, 0.031, 0.027),
        directions=((0.78, 0.55, -0.30), (0.88, 0.42, -0.22), (0.94, 0.30, -0.15)),
        radius_base=(0.0110, 0.0100), radius_tip=(0.0085, 0.0072), rings=_RINGS_8, nail=(0.0, 0.45, 1.0),
    ),
    _Digit(
        name="index", joints=(1, 2, 3), tip_vertex=317, patch=((0, 1), (9, 11), (1, 3)),
        lengths=(0.040, 0.024, 0.021), directions=_finger_directions(0.10, _FLEX),
        radius_base=(0.0095, 0.0085), radius_tip=(0.0075, 0.0065), rings=_RINGS_8, nail=(0.0, 0.0, 1.0),
    ),
    _Digit(
        name="middle", joints=(4, 5, 6), tip_vertex=444, patch=((0, 1), (6, 8), (1, 3)),
        lengths=(0.044, 0.028, 0.022), directions=_finger_directions(0.02, _FLEX),
        radius_base=(0.0098, 0.0088), radius_tip=(0.0078, 0.0068), rings=_RINGS_9, nail=(0.0, 0.0, 1.0),
    ),
    _Digit(
        name="ring", joints=(10, 11, 12), tip_vertex=556, patch=((0, 1), (3, 5), (1, 3)),
        lengths=(0.041, 0.027, 0.021), directions=_finger_directions(-0.06, _FLEX),
        radius_base=(0.0093, 0.0083), radius_tip=(0.0073, 0.0063), rings=_RINGS_9, nail=(0.0, 0.0, 1.0),
    ),
    _Digit(
        name="little", joints=(7, 8, 9), tip_vertex=673, patch=((0, 1), (0, 2), (1, 3)),
        lengths=(0.033, 0.020, 0.019), directions=_finger_directions(-0.16, _FLEX),
        radius_base=(0.0082, 0.0074), radius_tip=(0.0065, 0.0057), rings=_RINGS_8, nail=(0.0, 0.0, 1.0),
    ),
)  # fmt: skip


Lattice = tuple[int, int, int]


@dataclass
class _Mesh:
    """The right hand in the local frame, in construction order, with what skinning and shaping need."""

    vertices: np.ndarray  # (778, 3)
    faces: np.ndarray  # (1538, 3)
    digit: np.ndarray  # (778,) digit index into _DIGITS, -1 for the palm
    chain_t: np.ndarray  # (778,) arc length from the digit's first joint (palm: unused)
    centre: np.ndarray  # (778, 3) ring centre (palm: the vertex itself)
    joints: np.ndarray  # (16, 3) designed joint positions
    regressor_sets: list[list[int]]  # per joint, the vertices whose mean is the joint
    tips: dict[str, int]  # digit name -> apex vertex (construction order)


# ---------------------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------------------


def _face_cells(axis: int, side: int):
    """Yield ((cb, cc), 4 lattice corners) for each cell of one box face, counter-clockwise from outside."""
    b, c = (axis + 1) % 3, (axis + 2) % 3
    for cb in range(_CELLS[b]):
        for cc in range(_CELLS[c]):
            corners: list[Lattice] = []
            for db, dc in ((0, 0), (1, 0), (1, 1), (0, 1)):
                p = [0, 0, 0]
                p[axis] = _CELLS[axis] * side
                p[b], p[c] = cb + db, cc + dc
                corners.append((p[0], p[1], p[2]))
            yield (cb, cc), (corners if side else corners[::-1])


def _in_patch(cell: tuple[int, int], patch: Patch) -> bool:
    _, (b0, b1), (c0, c1) = patch
    return b0 <= cell[0] < b1 and c0 <= cell[1] < c1


def _boundary_loop(quads: list[list[Lattice]]) -> list[Lattice]:
    """The oriented boundary cycle of a patch of quads."""
    edges = {(q[i], q[(i + 1) % 4]) for q in quads for i in range(4)}
    following = {a: b for a, b in edges if (b, a) not in edges}
    start = min(following)
    loop = [start]
    while following[loop[-1]] != start:
        loop.append(following[loop[-1]])
    return loop


def _palm_position(p: Lattice) -> np.ndarray:
    """Map a lattice point of the box surface to the rounded, tapered, arched palm (local frame)."""
    half = np.array([_PALM_LENGTH / 2, _PALM_HALF_WIDTH, _PALM_HALF_THICKNESS])
    point = (np.asarray(p, dtype=float) / np.asarray(_CELLS) * 2 - 1) * half
    inner = np.clip(point, -(half - _ROUNDING), half - _ROUNDING)
    bulge = (point - inner) / _ROUNDING
    point = inner + _ROUNDING * bulge / np.linalg.norm(bulge)
    along = (point[0] + half[0]) / _PALM_LENGTH  # 0 at the wrist end, 1 at the knuckles
    v = point[1] * (_PALM_WRIST_HALF_WIDTH + (_PALM_HALF_WIDTH - _PALM_WRIST_HALF_WIDTH) * along) / half[1]
    u = _PALM_START_U + along * _PALM_LENGTH - _KNUCKLE_ARCH * (v - 0.005) ** 2 * along**2
    w = point[2] * (1.05 - 0.1 * along)
    return np.array([u, v, w])


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x)


def _ring_frame(
    directions: list[np.ndarray], nail: tuple[float, float, float], bone: int, fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Side and up axes of a ring: up is ``nail`` made normal to the finger (bones averaged at a joint)."""
    at_joint = fraction == 0 and bone > 0
    tangent = _unit(directions[bone - 1] + directions[bone]) if at_joint else directions[bone]
    up = _unit(np.asarray(nail) - np.dot(nail, tangent) * tangent)
    return np.cross(up, tangent), up


def _build_mesh() -> _Mesh:
    positions: list[np.ndarray] = []
    index: dict[Any, int] = {}

    def vertex(key: Any, position: np.ndarray) -> int:
        if key not in index:
            index[key] = len(positions)
            positions.append(position)
        return index[key]

    quads: list[list[int]] = []
    patches: dict[str, list[list[Lattice]]] = {d.name: [] for d in _DIGITS}
    for axis in range(3):
        for side in (0, 1):
            for cell, corners in _face_cells(axis, side):
                if (axis, side) == _WRIST_HOLE[0] and _in_patch(cell, _WRIST_HOLE):
                    continue
                owner = next(
                    (d.name for d in _DIGITS if d.patch[0] == (axis, side) and _in_patch(cell, d.patch)), None
                )
                if owner is not None:
                    patches[owner].append(corners)
                    continue
                quads.append([vertex(c, _palm_position(c)) for c in corners])
    palm_count = len(positions)

    joints = np.zeros((16, 3))
    regressor_sets: list[list[int]] = [[] for _ in range(16)]
    regressor_sets[0] = sorted(index[p] for p in index if p[0] == 1)  # the palm section next to the wrist
    joints[0] = np.mean([positions[i] for i in regressor_sets[0]], axis=0)
    digit_of = [-1] * palm_count
    chain_t = [0.0] * palm_count
    centres = list(positions)
    tips: dict[str, int] = {}
    triangles: list[tuple[int, int, int]] = []

    for digit_index, digit in enumerate(_DIGITS):
        loop = [index[p] for p in _boundary_loop(patches[digit.name])]
        loop_points = np.array([positions[i] for i in loop])
        directions = [_unit(np.asarray(d)) for d in digit.directions]
        chain = [loop_points.mean(axis=0) + _BASE_GAP * directions[0]]
        for length, direction in zip(digit.lengths, directions):
            chain.append(chain[-1] + length * direction)
        joints[list(digit.joints)] = chain[:3]
        total = sum(digit.lengths)

        # Ring angles follow the palm loop (no twist), snapped to an even 8-fold spacing.
        side_axis, up_axis = _ring_frame(directions, digit.nail, 0, 0.0)
        rel = loop_points - loop_points.mean(axis=0)
        angles = np.arctan2(rel @ up_axis / digit.radius_base[1], rel @ side_axis / digit.radius_base[0])
        turn = np.sign(np.sum(np.angle(np.exp(1j * np.diff(np.append(angles, angles[0]))))))
        steps = turn * np.arange(_RING_SIZE) * 2 * np.pi / _RING_SIZE
        phase = np.angle(np.mean(np.exp(1j * (angles - steps))))
        theta = phase + steps

        previous = loop
        for bone, fraction in digit.rings:
            t = sum(digit.lengths[:bone]) + fraction * digit.lengths[bone]
            centre = chain[bone] + fraction * digit.lengths[bone] * directions[bone]
            taper = t / total
            radius = (1 - taper) * np.asarray(digit.radius_base) + taper * np.asarray(digit.radius_tip)
            radius = radius * (0.8 if (bone, fraction) == digit.rings[-1] else 1.0)
            side_axis, up_axis = _ring_frame(directions, digit.nail, bone, fraction)
            ring = []
            for k in range(_RING_SIZE):
                offset = radius[0] * np.cos(theta[k]) * side_axis + radius[1] * np.sin(theta[k]) * up_axis
                ring.append(vertex((digit.name, bone, fraction, k), centre + offset))
                digit_of.append(digit_index)
                chain_t.append(t)
                centres.append(centre)
            if fraction == 0:
                regressor_sets[digit.joints[bone]] = ring
            for k in range(_RING_SIZE):
                k1 = (k + 1) % _RING_SIZE
                quads.append([previous[k], previous[k1], ring[k1], ring[k]])
            previous = ring
        apex = vertex((digit.name, "tip"), chain[3])
        digit_of.append(digit_index)
        chain_t.append(total)
        centres.append(chain[3])
        tips[digit.name] = apex
        triangles.extend((previous[k], previous[(k + 1) % _RING_SIZE], apex) for k in range(_RING_SIZE))

    vertices = np.array(positions)
    for a, b, c, d in quads:  # split along the shorter diagonal
        if np.linalg.norm(vertices[a] - vertices[c]) <= np.linalg.norm(vertices[b] - vertices[d]):
            triangles.extend(((a, b, c), (a, c, d)))
        else:
            triangles.extend(((a, b, d), (b, c, d)))
    return _Mesh(
        vertices,
        np.array(triangles, dtype=np.int64),
        np.array(digit_of),
        np.array(chain_t),
        np.array(centres),
        joints,
        regressor_sets,
        tips,
    )


# ---------------------------------------------------------------------------------------------------------
# Skinning, regressor, blend shapes, pose PCA
# ---------------------------------------------------------------------------------------------------------


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _skinning_weights(mesh: _Mesh) -> np.ndarray:
    """Rows sum to 1; fingers blend parent->child smoothly across each joint, the palm into the knuckles."""
    weights = np.zeros((len(mesh.vertices), 16))
    palm = mesh.digit < 0
    palm_points = mesh.vertices[palm]
    palm_share = np.zeros((palm_points.shape[0], 16))
    for digit_index, digit in enumerate(_DIGITS):
        j1, j2, j3 = digit.joints
        base_blend = 0.015 if digit.name == "thumb" else 0.010
        # Finger vertices: wrist | j1 | j2 | j3 along the chain, blended over +-h around each joint.
        mine = mesh.digit == digit_index
        t = mesh.chain_t[mine]
        bounds = np.array([0.0, digit.lengths[0], digit.lengths[0] + digit.lengths[1]])
        halves = np.array([base_blend, 0.006, 0.006])
        alpha = _smoothstep((t[:, None] - bounds + halves) / (2 * halves))  # (n, 3), decreasing along axis 1
        rows = np.flatnonzero(mine)
        weights[rows, 0] = 1 - alpha[:, 0]
        weights[rows, j1] = alpha[:, 0] - alpha[:, 1]
        weights[rows, j2] = alpha[:, 1] - alpha[:, 2]
        weights[rows, j3] = alpha[:, 2]
        # Palm vertices near this digit's base follow its first joint a little.
        direction = _unit(np.asarray(digit.directions[0]))
        rel = palm_points - mesh.joints[j1]
        along = rel @ direction
        lateral = np.linalg.norm(rel - along[:, None] * direction, axis=1)
        reach = max(digit.radius_base)
        falloff = np.exp(-((np.maximum(lateral - reach, 0.0) / 0.010) ** 2))
        palm_share[:, j1] = _smoothstep((along + base_blend) / (2 * base_blend)) * falloff
    total = palm_share.sum(axis=1, keepdims=True)
    palm_share /= np.maximum(total, 1.0)
    palm_share[:, 0] = 1 - palm_share.sum(axis=1)
    weights[palm] = palm_share
    return weights


def _joint_regressor(mesh: _Mesh) -> np.ndarray:
    regressor = np.zeros((16, len(mesh.vertices)))
    for joint, members in enumerate(mesh.regressor_sets):
        regressor[joint, members] = 1.0 / len(members)
    return regressor


def _shape_directions(mesh: _Mesh, rng: np.random.Generator) -> np.ndarray:
    """(778, 3, 10) displacement per unit beta in the local frame (a few mm each)."""
    v = mesh.vertices
    dirs = np.zeros((len(v), 3, 10))
    first_joint = np.zeros_like(v)
    is_finger = mesh.digit >= 0
    for digit_index, digit in enumerate(_DIGITS):
        first_joint[mesh.digit == digit_index] = mesh.joints[digit.joints[0]]
    first_joint[~is_finger] = v[~is_finger]
    along_finger = np.where(is_finger[:, None], mesh.centre - first_joint, 0.0)
    girth = np.where(is_finger[:, None], v - mesh.centre, 0.0)
    names = np.array(["palm"] + [d.name for d in _DIGITS])[mesh.digit + 1]

    dirs[:, :, 0] = 0.035 * (v - mesh.joints[0])  # overall size
    dirs[:, :, 1] = 0.06 * along_finger * np.isin(names, ("index", "middle", "ring", "little"))[:, None]
    dirs[:, 1, 2] = 0.05 * first_joint[:, 1]  # palm width: fingers move with their base
    dirs[:, 0, 3] = 0.05 * (first_joint[:, 0] - mesh.joints[0, 0])  # palm length
    dirs[:, :, 4] = 0.08 * girth
    dirs[:, 2, 4] += 0.06 * np.where(is_finger, 0.0, v[:, 2])  # palm thickness
    dirs[:, :, 5] = 0.08 * along_finger * (names == "thumb")[:, None]
    dirs[:, :, 6] = 0.05 * along_finger * ((names == "index").astype(float) - (names == "ring"))[:, None]
    dirs[:, :, 7] = 0.08 * along_finger * (names == "little")[:, None]
    spread = np.vectorize(lambda n: _SPREAD_SIGN.get(n, 0.0))(names)
    rel = v - first_joint
    dirs[:, :, 8] = 0.08 * spread[:, None] * np.stack((-rel[:, 1], rel[:, 0], np.zeros(len(v))), axis=1)
    # a smooth random field: a few low-frequency waves
    freq = rng.normal(0.0, 25.0, size=(4, 3))
    amp = rng.normal(0.0, 0.0015, size=(4, 3))
    phase = rng.uniform(0, 2 * np.pi, size=4)
    dirs[:, :, 9] = np.sin(v @ freq.T + phase) @ amp
    return dirs


def _pose_directions(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(778, 3, 135) small corrective bulges around each joint, in the local frame."""
    dirs = np.zeros((weights.shape[0], 3, 135))
    for joint in range(1, 16):
        parent = MANO_KINTREE_PARENTS[joint]
        near_joint = 4 * weights[:, joint] * weights[:, parent]  # 1 at the middle of the blend zone
        directions = rng.normal(size=(9, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        features = slice(9 * (joint - 1), 9 * joint)
        dirs[:, :, features] = 0.003 * near_joint[:, None, None] * directions.T[None]
    return dirs


def _pose_pca(mesh: _Mesh, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal finger-pose basis (45, 45) (first rows: curl, spread), a relaxed mean pose, samples."""
    curl = np.zeros((15, 3))
    spread = np.zeros((15, 3))
    for digit in _DIGITS:
        for bone, joint in enumerate(digit.joints):
            d = _unit(np.asarray(digit.directions[bone]))
            palmar = np.array([0.0, -0.7, -0.7]) if digit.name == "thumb" else np.array([0.0, 0.0, -1.0])
            palmar = _unit(palmar - np.dot(palmar, d) * d)
            curl[joint - 1] = _LOCAL_TO_WORLD @ np.cross(d, palmar) * (0.8 if bone == 2 else 1.0)
            if bone == 0:
                spread[joint - 1] = _LOCAL_TO_WORLD @ np.array([0.0, 0.0, _SPREAD_SIGN[digit.name]])
    basis = np.column_stack((curl.ravel(), spread.ravel(), rng.normal(size=(45, 43))))
    q, r = np.linalg.qr(basis)
    q *= np.sign(np.diag(r))  # keep the first two rows pointing along curl and spread
    components = q.T
    mean = 0.18 * curl.ravel() + rng.normal(0.0, 0.02, size=45)
    coeffs = rng.normal(size=(24, 45)) * (1.2 * np.exp(-np.arange(45) / 8.0))
    return components, mean, coeffs


def _mirror(model: dict[str, Any]) -> dict[str, Any]:
    """The left hand: x negated, winding flipped, pose terms mirrored (axis-angle (x,y,z) -> (x,-y,-z))."""
    flip = np.array([-1.0, 1.0, 1.0])
    aa_sign = np.tile([1.0, -1.0, -1.0], 15)
    pose_feature_sign = np.outer(flip, flip)  # entry (a, b) of R - I changes sign as flip[a] * flip[b]
    left = dict(model)
    left["v_template"] = model["v_template"] * flip
    left["J"] = model["J"] * flip
    left["f"] = model["f"][:, ::-1].copy()
    left["shapedirs"] = model["shapedirs"] * flip[None, :, None]
    feature_sign = np.tile(pose_feature_sign.ravel(), 15)
    left["posedirs"] = model["posedirs"] * flip[None, :, None] * feature_sign[None, None, :]
    left["hands_components"] = model["hands_components"] * aa_sign[None, :]
    left["hands_mean"] = model["hands_mean"] * aa_sign
    return left


def make_standin_hand_model(side: str = "right", seed: int = 0) -> dict[str, Any]:
    """Build the stand-in hand (NOT MANO) as the dict :func:`hfl_ros.model.mano.load_hand_model_file` returns.

    Same keys, shapes and conventions as a MANO file (metres, 16-joint tree, fingertips at MANO's vertex
    indices, ``J_regressor`` dense here). Deterministic for a given ``seed``, which only drives the random
    parts (blend-shape details and the pose PCA).
    """
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    rng = np.random.default_rng(seed)
    mesh = _build_mesh()
    if len(mesh.vertices) != NUM_VERTICES or len(mesh.faces) != NUM_FACES:
        raise AssertionError(f"stand-in hand has {len(mesh.vertices)} vertices / {len(mesh.faces)} faces")

    # Reorder vertices so that each apex lands on MANO's fingertip index.
    order = np.full(NUM_VERTICES, -1)
    for digit in _DIGITS:
        order[digit.tip_vertex] = mesh.tips[digit.name]
    order[order < 0] = [i for i in range(NUM_VERTICES) if i not in mesh.tips.values()]
    new_index = np.argsort(order)

    def world(points: np.ndarray) -> np.ndarray:
        return points @ _LOCAL_TO_WORLD.T + _WORLD_OFFSET

    def world_dirs(dirs: np.ndarray) -> np.ndarray:
        return np.einsum("rc,vcn->vrn", _LOCAL_TO_WORLD, dirs)

    weights = _skinning_weights(mesh)
    regressor = _joint_regressor(mesh)
    v_template = world(mesh.vertices)[order]
    components, mean, coeffs = _pose_pca(mesh, rng)
    model: dict[str, Any] = {
        "v_template": v_template,
        "f": new_index[mesh.faces].astype(np.uint32),
        "J_regressor": regressor[:, order],
        "weights": weights[order],
        "kintree_table": np.array([[4294967295, *MANO_KINTREE_PARENTS[1:]], list(range(16))], dtype=np.int64),
        "shapedirs": world_dirs(_shape_directions(mesh, rng))[order],
        "posedirs": world_dirs(_pose_directions(weights, rng))[order],
        "hands_components": components,
        "hands_mean": mean,
        "hands_coeffs": coeffs,
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }
    model["J"] = model["J_regressor"] @ v_template
    return _swap_vertices(_mirror(model), 444, 445) if side == "left" else model


def _swap_vertices(model: dict[str, Any], a: int, b: int) -> dict[str, Any]:
    """Exchange two vertex indices everywhere, so that the left middle tip sits at 445 as manopth expects."""
    perm = np.arange(NUM_VERTICES)
    perm[[a, b]] = perm[[b, a]]
    out = dict(model)
    for key in ("v_template", "weights", "shapedirs", "posedirs"):
        out[key] = model[key][perm]
    out["J_regressor"] = model["J_regressor"][:, perm]
    out["f"] = perm[model["f"].astype(np.int64)].astype(np.uint32)
    return out


def write_standin_hand_model(path: str | Path, side: str = "right", seed: int = 0) -> Path:
    """Write the stand-in hand (NOT MANO) as a MANO-layout pickle (protocol 2, ``J_regressor`` as scipy CSC).

    The conventional file names are ``STANDIN_HAND_RIGHT.pkl`` / ``STANDIN_HAND_LEFT.pkl``.
    """
    from scipy.sparse import csc_matrix  # only the writer needs scipy

    model = make_standin_hand_model(side, seed)
    model["J_regressor"] = csc_matrix(model["J_regressor"])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as stream:
        pickle.dump(model, stream, protocol=2)
    return path

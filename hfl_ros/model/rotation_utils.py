"""Differentiable rotation conversions (torch, float32-safe): the MANO regressor's and the MANO layer's."""

from __future__ import annotations

import torch
from torch.nn import functional as nnf


def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """(..., 6) = (a1, a2) -> (..., 3, 3) by Gram-Schmidt, with b1, b2, b3 as the matrix **columns**."""
    a1, a2 = x[..., 0:3], x[..., 3:6]
    b1 = nnf.normalize(a1, dim=-1)
    b2 = nnf.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1)


def rotmat_to_quaternion(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation -> unit quaternion (..., 4) as (w, x, y, z) with w >= 0.

    Shepperd's method: of the four algebraically equal formulas, each element uses the one whose divisor is
    largest, which keeps it accurate for every angle including 0 and pi.
    """
    r00, r01, r02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    r10, r11, r12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    r20, r21, r22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    t = torch.stack((1 + r00 + r11 + r22, 1 + r00 - r11 - r22, 1 - r00 + r11 - r22, 1 - r00 - r11 + r22), -1)
    candidates = torch.stack(
        (
            torch.stack((t[..., 0], r21 - r12, r02 - r20, r10 - r01), -1),
            torch.stack((r21 - r12, t[..., 1], r01 + r10, r02 + r20), -1),
            torch.stack((r02 - r20, r01 + r10, t[..., 2], r12 + r21), -1),
            torch.stack((r10 - r01, r02 + r20, r12 + r21, t[..., 3]), -1),
        ),
        -2,
    )  # (..., 4 formulas, 4 components); formula i is q * 2 sqrt(t_i)
    best = t.argmax(-1, keepdim=True)
    q = candidates.gather(-2, best.unsqueeze(-1).expand(*best.shape, 4)).squeeze(-2)
    q = nnf.normalize(q, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) unit quaternion (w, x, y, z) -> (..., 3) axis-angle with angle in [0, pi]."""
    q = torch.where(q[..., :1] < 0, -q, q)
    w, v = q[..., :1], q[..., 1:]
    sin_half = v.norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(sin_half, w)
    small = sin_half < 1e-6
    # angle / sin(angle/2) -> 2 / w as the angle -> 0 (first-order, exact to float precision there)
    factor = torch.where(
        small, 2 / w.clamp_min(1e-6), angle / torch.where(small, torch.ones_like(sin_half), sin_half)
    )
    return v * factor


def rotmat_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 3) axis-angle vectors (angle in [0, pi])."""
    return quaternion_to_axis_angle(rotmat_to_quaternion(R))


def axis_angle_to_rotmat(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, (..., 3) axis-angle -> (..., 3, 3); exact with finite gradients at zero angle."""
    theta2 = (axis_angle * axis_angle).sum(-1)[..., None, None]
    small = theta2 < 1e-10
    safe_theta = torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))
    half_sinc = torch.sin(safe_theta / 2) / (safe_theta / 2)
    # sin(t)/t and (1 - cos t)/t² = sinc²(t/2)/2, replaced by their Taylor series near 0
    a = torch.where(small, 1 - theta2 / 6, torch.sin(safe_theta) / safe_theta)
    b = torch.where(small, 0.5 - theta2 / 24, 0.5 * half_sinc * half_sinc)
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), -1).reshape(*axis_angle.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + a * skew + b * (skew @ skew)

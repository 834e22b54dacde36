"""Rotation conversions (numpy) and the MANO pose mirroring used for left hands."""

from __future__ import annotations

import numpy as np

#: The left-right mirror of the camera frame: x -> -x.
MIRROR_X = np.diag([-1.0, 1.0, 1.0])


def axis_angle_to_matrix(axis_angle) -> np.ndarray:
    """Rodrigues' formula for axis-angle vectors (..., 3) -> rotation matrices (..., 3, 3)."""
    v = np.asarray(axis_angle, dtype=np.float64)
    angle = np.linalg.norm(v, axis=-1, keepdims=True)
    axis = v / np.where(angle > 1e-12, angle, 1.0)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zeros = np.zeros_like(x)
    skew = np.stack([zeros, -z, y, z, zeros, -x, -y, x, zeros], axis=-1).reshape((*v.shape[:-1], 3, 3))
    sin, cos = np.sin(angle)[..., None], np.cos(angle)[..., None]
    eye = np.broadcast_to(np.eye(3), skew.shape)
    return eye + sin * skew + (1.0 - cos) * (skew @ skew)


def matrix_to_axis_angle(R) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> axis-angle vectors (..., 3) with angle in [0, pi]; stable near pi."""
    q = matrix_to_quaternion_wxyz(R)
    q = np.where(q[..., :1] < 0, -q, q)  # w >= 0 gives the angle in [0, pi]
    vec_norm = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(vec_norm, q[..., :1])
    # angle / sin(angle / 2) -> 2 as the angle -> 0
    factor = np.where(vec_norm > 1e-12, angle / np.where(vec_norm > 1e-12, vec_norm, 1.0), 2.0)
    return q[..., 1:] * factor


def matrix_to_quaternion_wxyz(R) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) as (w, x, y, z), vectorised (Shepperd)."""
    R = np.asarray(R, dtype=np.float64)
    m00, m11, m22 = R[..., 0, 0], R[..., 1, 1], R[..., 2, 2]
    d21, d02, d10 = R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]
    s01, s02, s12 = R[..., 0, 1] + R[..., 1, 0], R[..., 0, 2] + R[..., 2, 0], R[..., 1, 2] + R[..., 2, 1]
    diag = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    # Row i is 4 * q_i * (w, x, y, z); the row of the largest |q_i| is the best conditioned.
    rows = np.stack(
        [
            np.stack([diag[..., 0], d21, d02, d10], -1),
            np.stack([d21, diag[..., 1], s01, s02], -1),
            np.stack([d02, s01, diag[..., 2], s12], -1),
            np.stack([d10, s02, s12, diag[..., 3]], -1),
        ],
        axis=-2,
    )
    best = np.argmax(diag, axis=-1)
    q = np.take_along_axis(rows, best[..., None, None], axis=-2)[..., 0, :]
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def matrix_to_quaternion_xyzw(R) -> np.ndarray:
    """One rotation matrix (3, 3) -> unit quaternion (x, y, z, w) with w >= 0, as ROS messages order it.

    The nearest rotation's quaternion for a matrix that is not quite orthonormal; the identity for a
    non-finite matrix (an invalid estimate still gets a well-formed message).
    """
    # Imported here so that the inference and training path (not the ROS messages) runs without transforms3d.
    from transforms3d.quaternions import mat2quat

    R = np.asarray(R, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(R)):
        return np.array([0.0, 0.0, 0.0, 1.0])
    w, x, y, z = mat2quat(R)
    q = np.array([x, y, z, w])
    q /= np.linalg.norm(q)
    return -q if w < 0 else q


def quaternion_xyzw_to_matrix(q) -> np.ndarray:
    """Quaternions (..., 4) as (x, y, z, w), normalised first -> rotation matrices (..., 3, 3)."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.sqrt(np.sum(q * q, axis=-1, keepdims=True))
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def mirror_rotation(R) -> np.ndarray:
    """The rotation seen in the x-mirrored frame: M R M with M = diag(-1, 1, 1); works on (..., 3, 3)."""
    return MIRROR_X @ np.asarray(R, dtype=np.float64) @ MIRROR_X


def mirror_mano_pose(pose) -> np.ndarray:
    """Mirror MANO axis-angle poses (..., 48) left <-> right: negate the y and z of each of the 16 joints."""
    p = np.array(pose, dtype=np.float64, copy=True)
    p = p.reshape((*p.shape[:-1], 16, 3))
    p[..., 1:] *= -1.0
    return p.reshape((*p.shape[:-2], 48))

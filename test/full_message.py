"""A HandObjectPoseArray with every field set to a distinct value, for the DDS round-trip test."""

from __future__ import annotations

import numpy as np


def make_full_message():
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import Point, Pose, Quaternion
    from hfl_ros.msg import HandObjectPose, HandObjectPoseArray, HandPose, ObjectPose
    from std_msgs.msg import Header
    from vision_msgs.msg import BoundingBox2D, Point2D, Pose2D

    header = Header(stamp=Time(sec=1_700_000_123, nanosec=456_789_000), frame_id="camera_color_optical_frame")

    def box(cx, cy, w, h, theta=0.0):
        return BoundingBox2D(center=Pose2D(position=Point2D(x=cx, y=cy), theta=theta), size_x=w, size_y=h)

    def pose(k):
        q = np.array([0.1 * k, -0.2, 0.3, 0.9]) / np.linalg.norm([0.1 * k, -0.2, 0.3, 0.9])
        return Pose(position=Point(x=0.01 * k, y=-0.02 * k, z=0.5 + 0.1 * k),
                    orientation=Quaternion(x=q[0], y=q[1], z=q[2], w=q[3]))

    poses = []
    for k in range(2):
        hand = HandPose(
            side=HandPose.LEFT if k else HandPose.RIGHT,
            detection_score=0.9 - 0.1 * k,
            estimate_score=0.75 + 0.05 * k,
            joints=[Point(x=0.001 * j, y=0.002 * j + k, z=0.6 + 0.003 * j) for j in range(21)],
            wrist_pose=pose(k + 1),
            translation_valid=bool(k),
            reprojection_error_px=1.25 + k,
            joints_2d=[Point2D(x=100.5 + j, y=200.25 + 2 * j + k) for j in range(21)],
            mano_pose=np.linspace(-1.0, 1.0, 48, dtype=np.float32) * (k + 1),
            mano_shape=np.arange(10, dtype=np.float32) * 0.1 - k,
            vertices=[Point(x=0.0001 * v, y=-0.0001 * v, z=0.55 + k) for v in range(778 if k == 0 else 3)],
            box=box(150.0 + k, 220.0, 80.5, 90.25, 0.0),
            track_id=7 + 2 * k,
        )
        obj = ObjectPose(
            class_id=f"{5 + k}",
            score=0.8 + 0.01 * k,
            estimate_score=0.6,
            pose=pose(k + 3),
            valid=not k,
            control_points_2d=[Point2D(x=300.0 + 3 * j, y=120.0 - j + k) for j in range(21)],
            inlier_count=123 + k,
            vote_count=210 - k,
            reprojection_error_px=2.5 + k,
            box=box(320.0, 240.0 + k, 120.0, 60.0),
            track_id=8 + 2 * k,
        )
        poses.append(HandObjectPose(
            header=header,
            status=HandObjectPose.STATUS_OK if k == 0 else HandObjectPose.STATUS_PNP_FAILED,
            status_message="" if k == 0 else "too few confident votes (3 < 6)",
            hand=hand,
            object=obj,
        ))
    return HandObjectPoseArray(header=header, poses=poses)

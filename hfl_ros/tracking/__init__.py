"""Temporal tracking: results of consecutive frames -> tracks with ids, online filters, offline smoothing.

Pure numpy (no rclpy, no torch): the node, the labeler and the benchmark share it.
"""

from .association import associate
from .filters import FILTER_MODES, FilterConfig, PoseFilter, update_filters
from .smoother import SmootherConfig, smooth_poses
from .tracker import Tracker, TrackerConfig

__all__ = [
    "FILTER_MODES",
    "FilterConfig",
    "PoseFilter",
    "SmootherConfig",
    "Tracker",
    "TrackerConfig",
    "associate",
    "smooth_poses",
    "update_filters",
]

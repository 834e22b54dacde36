"""The perception node's tracking: steadier TF on a noisy sequence, track ids, ~/reset, runtime changes."""

from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Time  # noqa: E402
from node_harness import set_parameters  # noqa: E402
from ros_helpers import HAND_T, OBJECT_T, make_node_assets, module_domain_id, reliable_inputs  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from test_perception_node import INPUT_TOPICS, NODE, Harness, running_node  # noqa: E402

pytestmark = pytest.mark.ros
FRAMES = 24
FPS = 30


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    assets = make_node_assets(tmp_path_factory.mktemp("node_assets"))
    params = {
        **assets, "num_threads": 1, "diagnostics_period": 0.3, "camera_info_max_age": 5.0,
        **reliable_inputs(*INPUT_TOPICS), "publish_joint_tf": False,
    }
    with running_node("rigged_noisy_perception_node.py", tmp_path_factory.mktemp("node_run"), params,
                      module_domain_id(__name__)) as h:
        yield h


def _run(harness: Harness, first_sec: int) -> tuple[dict[str, np.ndarray], list[tuple[int, ...]]]:
    """Send FRAMES frames at 30 Hz; returns each TF child's translations and each frame's track ids."""
    translations: dict[str, list[np.ndarray]] = {}
    ids = []
    for k in range(FRAMES):
        stamp = Time(sec=first_sec + k // FPS, nanosec=(k % FPS) * (10**9 // FPS))
        harness.send(stamp)
        poses = harness.poses_at(stamp)
        assert [p.status for p in poses.poses] == [0, 0], [p.status_message for p in poses.poses]
        ids.append(tuple(i for p in poses.poses for i in (p.hand.track_id, p.object.track_id)))

        def tf_at(stamp=stamp):
            found = [t for m in harness.tf for t in m.transforms
                     if (t.header.stamp.sec, t.header.stamp.nanosec) == (stamp.sec, stamp.nanosec)]
            return found if len(found) >= 4 else None

        tfs = harness.wait(tf_at, "the frame's four TF frames")
        for t in tfs:
            v = t.transform.translation
            translations.setdefault(t.child_frame_id, []).append(np.array([v.x, v.y, v.z]))
    return {name: np.array(v) for name, v in translations.items()}, ids


def _jitter(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum(np.diff(x, 2, axis=0) ** 2, -1))))


def test_filter_steadies_tf_and_reset_clears_tracks(harness):
    assert set_parameters(harness.session, NODE, {"temporal_filter": "none"})[0].successful
    raw, raw_ids = _run(harness, 200)
    assert len(set(raw_ids)) == 1 and sorted(raw_ids[0]) == [1, 2, 3, 4]

    response = harness.session.call(Trigger, f"{NODE}/reset", Trigger.Request())
    assert response.success and response.message == "cleared 4 track(s)"
    assert not set_parameters(harness.session, NODE, {"temporal_filter": "kalman"})[0].successful
    assert set_parameters(harness.session, NODE, {"temporal_filter": "constant_velocity"})[0].successful
    filtered, ids = _run(harness, 300)
    # Ids restart at 1 after the reset (without it they would go on from 5) and stay the same all along.
    assert len(set(ids)) == 1 and sorted(ids[0]) == [1, 2, 3, 4]

    assert sorted(filtered) == sorted(raw) == ["left_wrist", "object_3_0", "object_3_1", "right_wrist"]
    for name, truth in (("right_wrist", HAND_T), ("object_3_0", OBJECT_T)):
        assert _jitter(filtered[name]) < 0.5 * _jitter(raw[name]), name
        raw_err = np.linalg.norm(raw[name] - truth, axis=-1)[5:].mean()
        assert np.linalg.norm(filtered[name] - truth, axis=-1)[5:].mean() < raw_err, name

    values = harness.diagnostics_values(lambda v: v.get("temporal_filter") == "constant_velocity",
                                        "diagnostics with the tracking figures")
    assert values["tracks_active"] == "4" and values["gate_rejections"] == "0"

"""The perception node, run as a separate process and fed synthetic frames over DDS.

One node process serves the whole module (torch start-up takes seconds). It runs with random weights of the
smallest network, the stand-in hand model and a generated object model; its network's 2D outputs are rigged
to a known hand and object pose (test/rigged_perception_node.py) so that the published poses can be checked.
Pure helpers of the node (queue, parameters, frame processing, diagnostics) are tested first, without ROS.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from hfl_ros.msg import HandObjectPose, HandObjectPoseArray  # noqa: E402
from node_harness import RosSession, set_parameters, start_process, stop_process  # noqa: E402
from ros_helpers import (  # noqa: E402
    HAND_T,
    IMAGE_H,
    IMAGE_W,
    K_TEST,
    OBJECT_EXTENTS,
    OBJECT_R,
    OBJECT_T,
    REPO,
    make_node_assets,
    module_domain_id,
    reliable_inputs,
    write_params_file,
)
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402
from vision_msgs.msg import (  # noqa: E402
    BoundingBox2D,
    Detection2D,
    Detection2DArray,
    Detection3DArray,
    ObjectHypothesisWithPose,
)
from visualization_msgs.msg import MarkerArray  # noqa: E402

from hfl_ros.errors import BadBoxError  # noqa: E402
from hfl_ros.hand_joints import JOINT_NAMES  # noqa: E402
from hfl_ros.results import HandEstimate, HandObjectResult, Status  # noqa: E402
from hfl_ros.ros.convert import LabelMap, rgb_to_image_data  # noqa: E402
from hfl_ros.ros.diagnostics import PerceptionStats, diagnostics_values  # noqa: E402
from hfl_ros.ros.frame_processor import process_frame  # noqa: E402
from hfl_ros.ros.frame_queue import FrameQueue  # noqa: E402
from hfl_ros.ros.params import PARAMS, ParameterError, validate_config  # noqa: E402

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.ros

NODE = "/hfl_perception"
#: The node's image, camera_info and detections inputs, remapped to these topics.
INPUT_TOPICS = ("/cam/image_raw", "/cam/camera_info", "/detector/detections")
FRAME_ID = "camera_optical"
RIGHT_BOX = (30.0, 30.0, 80.0, 90.0)
LEFT_BOX = (90.0, 20.0, 140.0, 80.0)
OBJECT_A = (50.0, 40.0, 100.0, 100.0)  # overlaps the right hand most
OBJECT_B = (100.0, 30.0, 150.0, 90.0)  # overlaps the left hand most
RGB = np.random.default_rng(0).integers(0, 256, (IMAGE_H, IMAGE_W, 3), dtype=np.uint8)
TIMEOUT = 60.0


# ----------------------------------------------------------------------------------------------------------
# Pure helpers (no node process)


def test_latest_queue_keeps_only_the_newest_and_counts_drops():
    queue = FrameQueue("latest")
    for i in range(4):
        assert queue.put(i)
    assert len(queue) == 1 and queue.dropped == 3
    assert queue.get(timeout=0) == 3
    assert queue.get(timeout=0) is None


def test_all_queue_never_drops_and_blocks_when_full():
    queue = FrameQueue("all", maxsize=2)
    queue.put("a")
    queue.put("b")
    warned = threading.Event()
    done = threading.Event()

    def producer():
        queue.put("c", on_full=warned.set)
        done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    assert warned.wait(10.0)  # the producer reached the full queue and warned
    assert not done.is_set()
    assert queue.get(timeout=1.0) == "a"  # frees a slot: the producer goes on
    assert done.wait(10.0)
    thread.join()
    assert [queue.get(timeout=0), queue.get(timeout=0)] == ["b", "c"]
    assert queue.dropped == 0 and queue.blocked == 1


def test_closing_the_queue_wakes_a_blocked_producer():
    queue = FrameQueue("all", maxsize=1)
    queue.put(1)
    result = []
    thread = threading.Thread(target=lambda: result.append(queue.put(2)))
    thread.start()
    queue.close()
    thread.join(10.0)
    assert result == [False]


def test_validate_config_names_the_bad_parameter(tmp_path):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"x")
    good = validate_config({"checkpoint_path": str(ckpt)})
    assert good.queue_policy == "latest" and good.sync_slop == 0.0
    assert validate_config({"checkpoint_path": str(ckpt), "sync_slop": 1}).sync_slop == 1.0
    cases = [
        ({}, "checkpoint_path", "not set"),
        ({"checkpoint_path": str(tmp_path / "missing.pt")}, "checkpoint_path", "does not exist"),
        ({"queue_policy": "sometimes"}, "queue_policy", "one of latest, all"),
        ({"device": "gpu"}, "device", "auto, cpu, cuda or cuda:N"),
        ({"hand_score_threshold": 1.5}, "hand_score_threshold", "too large"),
        ({"mano_dir": str(tmp_path / "nope")}, "mano_dir", "does not exist"),
        ({"right_hand_labels": ["hand"], "left_hand_labels": ["Hand"]}, "left_hand_labels", "one side only"),
        ({"publish_tf": "yes"}, "publish_tf", "true or false"),
    ]
    for values, name, needle in cases:
        values = {"checkpoint_path": str(ckpt), **values} if name != "checkpoint_path" else values
        with pytest.raises(ParameterError, match=needle) as info:
            validate_config(values)
        assert info.value.name == name
        assert str(info.value).startswith(f"parameter '{name}'")


def test_every_parameter_is_in_the_yaml_and_the_docs():
    import yaml

    yaml_params = yaml.safe_load((REPO / "config" / "perception.yaml").read_text())["/**"]["ros__parameters"]
    assert sorted(yaml_params) == sorted(spec.name for spec in PARAMS)
    for spec in PARAMS:  # the shipped file holds the defaults
        default = list(spec.default) if isinstance(spec.default, list) else spec.default
        assert yaml_params[spec.name] == default, spec.name
    docs = (REPO / "docs" / "node.md").read_text()
    missing = [spec.name for spec in PARAMS if f"`{spec.name}`" not in docs]
    assert missing == []


class _FakeEstimator:
    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.calls = []

    def estimate(self, image, K, detections):
        self.calls.append((image.shape, K.copy(), list(detections)))
        return self.behaviour(detections)


def _fake_msgs(encoding="rgb8", k=None):
    image = SimpleNamespace(height=2, width=2, encoding=encoding, step=6, data=bytes(12))
    info = None if k is False else SimpleNamespace(k=np.array(k if k is not None else K_TEST.reshape(-1)))
    hyp = SimpleNamespace(hypothesis=SimpleNamespace(class_id="right_hand", score=0.9))
    centre = SimpleNamespace(position=SimpleNamespace(x=1.0, y=1.0))
    bbox = SimpleNamespace(center=centre, size_x=1.0, size_y=1.0)
    obj = SimpleNamespace(hypothesis=SimpleNamespace(class_id="3", score=0.5))
    dets = SimpleNamespace(detections=[SimpleNamespace(results=[hyp], bbox=bbox),
                                       SimpleNamespace(results=[obj], bbox=bbox)])
    return image, dets, info


def test_process_frame_turns_frame_errors_into_one_status_per_hand():
    estimator = _FakeEstimator(lambda dets: [])
    for kwargs, reason, needle in [
        (dict(encoding="yuv422"), "bad_image", "unsupported image encoding"),
        (dict(k=np.zeros(9)), "bad_camera_info", "all zero"),
        (dict(k=False), "bad_camera_info", "camera_info missing"),
    ]:
        outcome = process_frame(estimator, *_fake_msgs(**kwargs), LabelMap())
        assert [r.status for r in outcome.results] == [Status.BAD_INPUT]  # the one hand, not the object
        assert needle in outcome.results[0].status_message
        assert outcome.failure_reasons == [reason]
    assert estimator.calls == []


def test_process_frame_reports_estimator_bugs_and_pair_errors():
    def crash(dets):
        raise RuntimeError("boom")

    outcome = process_frame(_FakeEstimator(crash), *_fake_msgs(), LabelMap())
    assert [r.status for r in outcome.results] == [Status.INTERNAL_ERROR]
    assert "RuntimeError: boom" in outcome.results[0].status_message and "boom" in outcome.traceback

    def bad_pair(dets):
        hand = next(d for d in dets if d.is_hand)
        return [HandObjectResult(Status.BAD_INPUT, HandEstimate(hand.side, hand.box, hand.score),
                                 status_message="bad", error=BadBoxError("bad"))]

    fake = _FakeEstimator(bad_pair)
    outcome = process_frame(fake, *_fake_msgs(), LabelMap())
    assert outcome.frame_error is None and outcome.failure_reasons == ["bad_box"]
    (shape, K, dets), = fake.calls
    assert shape == (2, 2, 3) and np.array_equal(K, K_TEST)
    assert [d.is_hand for d in dets] == [True, False]


def test_diagnostics_values_list_rates_latency_and_failures():
    stats = PerceptionStats()
    stats.count_input("image")
    stats.frame_done(0.25, 0.2)
    stats.failure("bad_box", 2)
    stats.status("ok")
    values = dict(diagnostics_values(stats.snapshot(dropped_frames=3, extra={"device": "cpu"})))
    assert float(values["latency_max_ms"]) == pytest.approx(250.0)
    assert values["failures_bad_box"] == "2" and values["dropped_frames"] == "3"
    assert values["status_ok"] == "1" and values["device"] == "cpu"
    assert float(values["input_rate_image_hz"]) > 0
    # a new window starts empty, totals stay
    values = dict(diagnostics_values(stats.snapshot(dropped_frames=3)))
    assert values["processed_rate_hz"] == "0.000" and values["frames_processed"] == "1"


# ----------------------------------------------------------------------------------------------------------
# The node process


class Harness:
    """The test side: publishers of the inputs, collectors of every output, frame helpers."""

    def __init__(self, session: RosSession, proc: subprocess.Popen):
        self.session, self.proc = session, proc
        node = session.node
        image, camera_info, detections = INPUT_TOPICS
        self.pub_image = node.create_publisher(Image, image, 10)
        self.pub_info = node.create_publisher(CameraInfo, camera_info, 10)
        self.pub_dets = node.create_publisher(Detection2DArray, detections, 10)
        self.sub_poses, self.poses = session.subscribe(HandObjectPoseArray, f"{NODE}/hand_object_poses")
        self.sub_objects, self.objects = session.subscribe(Detection3DArray, f"{NODE}/objects")
        self.sub_markers, self.markers = session.subscribe(MarkerArray, f"{NODE}/markers")
        self.sub_debug, self.debug = session.subscribe(Image, f"{NODE}/debug_image")
        self.sub_tf, self.tf = session.subscribe(TFMessage, "/tf")
        self.sub_diag, self.diagnostics = session.subscribe(DiagnosticArray, "/diagnostics")
        self._next_sec = 100

    def wait(self, condition, what: str, timeout: float = TIMEOUT):
        return self.session.wait_for(condition, timeout, what, self.proc)

    def wait_ready(self) -> None:
        pubs = (self.pub_image, self.pub_info, self.pub_dets)
        subs = (self.sub_poses, self.sub_objects, self.sub_markers, self.sub_debug, self.sub_tf,
                self.sub_diag)
        self.wait(lambda: all(p.get_subscription_count() > 0 for p in pubs)
                  and all(s.get_publisher_count() > 0 for s in subs), "the node's topics", timeout=180.0)

    def next_stamp(self, jump_s: int = 0) -> Time:
        self._next_sec += 1 + jump_s
        return Time(sec=self._next_sec, nanosec=123)

    @staticmethod
    def image_msg(stamp: Time, rgb: np.ndarray = RGB) -> Image:
        h, w = rgb.shape[:2]
        return Image(header=Header(stamp=stamp, frame_id=FRAME_ID), height=h, width=w, encoding="rgb8",
                     step=w * 3, data=rgb_to_image_data(rgb))

    @staticmethod
    def info_msg(stamp: Time, k=None) -> CameraInfo:
        k = K_TEST.reshape(-1) if k is None else np.asarray(k, dtype=float)
        return CameraInfo(header=Header(stamp=stamp, frame_id=FRAME_ID), height=IMAGE_H, width=IMAGE_W,
                          k=[float(v) for v in k])

    @staticmethod
    def dets_msg(stamp: Time, items) -> Detection2DArray:
        header = Header(stamp=stamp, frame_id=FRAME_ID)
        detections = []
        for label, box, score in items:
            hyp = ObjectHypothesisWithPose()
            hyp.hypothesis.class_id, hyp.hypothesis.score = label, score
            bbox = BoundingBox2D(size_x=box[2] - box[0], size_y=box[3] - box[1])
            bbox.center.position.x, bbox.center.position.y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            detections.append(Detection2D(header=header, results=[hyp], bbox=bbox))
        return Detection2DArray(header=header, detections=detections)

    def send(self, stamp: Time, items=None, image: Image | None = None,
             info: CameraInfo | bool | None = True):
        """Publish camera_info (unless ``info`` is False), image and detections with ``stamp``."""
        if items is None:
            items = [("right_hand", RIGHT_BOX, 0.9), ("left_hand", LEFT_BOX, 0.8), ("3", OBJECT_A, 0.7),
                     ("3", OBJECT_B, 0.6)]
        if info is not False:
            self.pub_info.publish(self.info_msg(stamp) if info is True else info)
        self.pub_image.publish(image if image is not None else self.image_msg(stamp))
        self.pub_dets.publish(self.dets_msg(stamp, items))

    def _with_stamp(self, msgs, stamp: Time, header=lambda m: m.header):
        return [m for m in msgs
                if header(m).stamp.sec == stamp.sec and header(m).stamp.nanosec == stamp.nanosec]

    def poses_at(self, stamp: Time) -> HandObjectPoseArray:
        (msg,) = self.wait(lambda: self._with_stamp(self.poses, stamp), f"the poses of stamp {stamp.sec}")
        return msg

    def outputs_at(self, stamp: Time):
        """(poses, objects, markers, tf, debug image) of one frame (tf: all transforms with the stamp)."""
        poses = self.poses_at(stamp)
        objects = self.wait(lambda: self._with_stamp(self.objects, stamp), "the Detection3DArray")[0]
        markers = self.wait(lambda: [m for m in self.markers if m.markers
                                     and self._with_stamp([m.markers[0]], stamp)], "the markers")[0]
        tf = [t for m in self.wait(lambda: [m for m in self.tf if self._with_stamp(m.transforms, stamp)],
                                   "the TF") for t in m.transforms]
        debug = self.wait(lambda: self._with_stamp(self.debug, stamp), "the debug image")[0]
        return poses, objects, markers, tf, debug

    def good_frame(self) -> HandObjectPoseArray:
        stamp = self.next_stamp()
        self.send(stamp)
        msg = self.poses_at(stamp)
        assert [p.status for p in msg.poses] == [0, 0], [p.status_message for p in msg.poses]
        return msg

    def diagnostics_values(self, condition, what: str, start: int | None = None) -> dict[str, str]:
        """Key/values of the first diagnostics message (received from now on, or from index ``start``) that
        satisfies ``condition``."""
        start = len(self.diagnostics) if start is None else start

        def found():
            for msg in self.diagnostics[start:]:
                for status in msg.status:
                    values = {kv.key: kv.value for kv in status.values}
                    if NODE[1:] in status.name and condition(values):
                        return {**values, "__level__": status.level, "__message__": status.message,
                                "__hardware_id__": status.hardware_id}
            return None

        return self.wait(found, what)


@pytest.fixture(scope="module")
def node_assets(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return make_node_assets(tmp_path_factory.mktemp("node_assets"))


@contextlib.contextmanager
def running_node(script: str, directory: Path, params: dict, domain: int) -> Iterator[Harness]:
    """``test/<script>`` started with these parameters and the camera/detector remaps, as a ready Harness;
    stopped when the block ends."""
    import os

    params_file = write_params_file(directory / "params.yaml", params)
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, str(HERE / script), "--ros-args", "--params-file", str(params_file)]
    for name, topic in zip(("image", "camera_info", "detections"), INPUT_TOPICS, strict=True):
        cmd += ["-r", f"{name}:={topic}"]
    proc = start_process(cmd, env, directory)
    session = RosSession(domain)
    h = Harness(session, proc)
    try:
        h.wait_ready()
        yield h
    finally:
        stop_process(proc)
        session.close()


@pytest.fixture(scope="module")
def harness(node_assets, tmp_path_factory):
    params = {
        **node_assets, "num_threads": 1, "tf_prefix": "test/", "marker_lifetime": 0.7,
        "publish_vertices": True, "publish_debug_image": True, "diagnostics_period": 0.3,
        "camera_info_max_age": 5.0, "camera_info_wait": 0.1, **reliable_inputs(*INPUT_TOPICS),
    }
    with running_node("rigged_perception_node.py", tmp_path_factory.mktemp("node_run"), params,
                      module_domain_id(__name__)) as h:
        yield h


def _matrix(q) -> np.ndarray:
    import transforms3d.quaternions as tq

    return tq.quat2mat([q.w, q.x, q.y, q.z])


def _xyz(p) -> np.ndarray:
    return np.array([p.x, p.y, p.z])


def test_inputs_are_reliable_through_their_qos_overrides(harness):
    """The harness gives qos_overrides for the three inputs at start-up (the default is best effort): the
    node's subscriptions are reliable in the ROS graph."""
    from rclpy.qos import ReliabilityPolicy

    def reliabilities():
        graph = harness.session.node
        infos = [i for topic in INPUT_TOPICS for i in graph.get_subscriptions_info_by_topic(topic)
                 if i.node_name == NODE[1:]]
        return [i.qos_profile.reliability for i in infos] if len(infos) == len(INPUT_TOPICS) else None

    assert harness.wait(reliabilities, "the node's subscriptions") == [ReliabilityPolicy.RELIABLE] * 3


def test_good_frame_poses_header_and_known_poses(harness):
    stamp = harness.next_stamp()
    harness.send(stamp)
    msg = harness.poses_at(stamp)
    assert msg.header.frame_id == FRAME_ID
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (stamp.sec, 123)
    statuses = [p.status for p in msg.poses]
    assert statuses == [HandObjectPose.STATUS_OK] * 2, [p.status_message for p in msg.poses]
    assert [p.hand.side for p in msg.poses] == [0, 1]
    for pose in msg.poses:
        assert pose.header.frame_id == FRAME_ID and pose.header.stamp.sec == stamp.sec
        assert pose.hand.translation_valid
        np.testing.assert_allclose(_xyz(pose.hand.wrist_pose.position), HAND_T, atol=1e-3)
        np.testing.assert_allclose(_xyz(pose.hand.joints[0]), HAND_T, atol=1e-3)
        assert len(pose.hand.vertices) == 778
        assert pose.object.valid and pose.object.class_id == "3"
        np.testing.assert_allclose(_xyz(pose.object.pose.position), OBJECT_T, atol=1e-3)
        np.testing.assert_allclose(_matrix(pose.object.pose.orientation), OBJECT_R, atol=1e-3)
        assert pose.object.inlier_count > 0
    boxes = [(p.object.box.center.position.x, p.object.box.size_x) for p in msg.poses]
    assert boxes == [(75.0, 50.0), (125.0, 50.0)]  # each hand paired with the object it overlaps


def test_tf_markers_objects_and_debug_image(harness, node_assets):
    from hfl_ros.model.mano import load_hand_model_file

    stamp = harness.next_stamp()
    harness.send(stamp)
    poses, objects, markers, tf, debug = harness.outputs_at(stamp)

    # TF: wrists, joints and objects with the prefix, children of the camera frame
    expected = {"test/right_wrist", "test/left_wrist", "test/object_3_0", "test/object_3_1"}
    expected |= {f"test/{side}_{name}" for side in ("right", "left") for name in JOINT_NAMES[1:]}
    names = [t.child_frame_id for t in tf]
    assert sorted(names) == sorted(expected)
    assert {t.header.frame_id for t in tf} == {FRAME_ID}
    by_name = {t.child_frame_id: t.transform for t in tf}
    np.testing.assert_allclose(_xyz(by_name["test/right_wrist"].translation), HAND_T, atol=1e-3)
    np.testing.assert_allclose(_xyz(by_name["test/object_3_1"].translation), OBJECT_T, atol=1e-3)
    np.testing.assert_allclose(_matrix(by_name["test/object_3_0"].rotation), OBJECT_R, atol=1e-3)
    tip = JOINT_NAMES.index("index_tip")
    np.testing.assert_allclose(_xyz(by_name["test/left_index_tip"].translation),
                               _xyz(poses.poses[1].hand.joints[tip]), atol=1e-6)

    # Markers: the hand meshes are the MANO-layout faces over the published vertices
    assert {m.header.frame_id for m in markers.markers} == {FRAME_ID}
    assert {(m.lifetime.sec, m.lifetime.nanosec) for m in markers.markers} == {(0, 700_000_000)}
    meshes = [m for m in markers.markers if m.ns == "hand_mesh"]
    assert len(meshes) == 2 and all(m.type == 11 and len(m.points) == 1538 * 3 for m in meshes)
    faces = load_hand_model_file(Path(node_assets["mano_dir"]) / "STANDIN_HAND_RIGHT.pkl")["f"]
    verts = np.array([_xyz(p) for p in poses.poses[0].hand.vertices])
    np.testing.assert_allclose(np.array([_xyz(p) for p in meshes[0].points]), verts[faces.reshape(-1)],
                               atol=1e-6)
    assert (meshes[0].color.r, meshes[0].color.b) != (meshes[1].color.r, meshes[1].color.b)
    kinds = sorted((m.ns, m.type, len(m.points)) for m in markers.markers if m.ns != "hand_mesh")
    assert kinds == sorted([("hand_joints", 7, 21)] * 2 + [("hand_bones", 5, 40)] * 2
                           + [("object_axes", 5, 6)] * 2 + [("object_model", 11, 36)] * 2)

    # Detection3DArray: both objects, pose and the model's box
    assert objects.header.frame_id == FRAME_ID
    assert [d.id for d in objects.detections] == ["test/object_3_0", "test/object_3_1"]
    for det, score in zip(objects.detections, (0.7, 0.6), strict=True):
        assert det.results[0].hypothesis.class_id == "3"
        assert det.results[0].hypothesis.score == pytest.approx(score)
        np.testing.assert_allclose(_xyz(det.results[0].pose.pose.position), OBJECT_T, atol=1e-3)
        np.testing.assert_allclose(_xyz(det.bbox.center.position), OBJECT_T, atol=1e-3)
        np.testing.assert_allclose(_xyz(det.bbox.size), OBJECT_EXTENTS, atol=1e-6)

    # Debug image: same header and size, with something drawn on it
    assert (debug.header.frame_id, debug.width, debug.height, debug.encoding) == (FRAME_ID, IMAGE_W, IMAGE_H,
                                                                                   "rgb8")
    drawn = np.frombuffer(bytes(debug.data), np.uint8).reshape(IMAGE_H, IMAGE_W, 3)
    assert drawn.shape == RGB.shape and np.any(drawn != RGB)


def test_exactly_one_array_per_synced_frame(harness):
    frames = [
        (harness.next_stamp(), None),
        (harness.next_stamp(), []),  # no detections: an empty array
        (harness.next_stamp(), [("3", OBJECT_A, 0.7)]),  # an object but no hand: empty too
        (harness.next_stamp(), [("hand", RIGHT_BOX, 0.9)]),  # side from default_hand_side
    ]
    for stamp, items in frames:
        harness.send(stamp, items)
        harness.poses_at(stamp)
    sentinel = harness.next_stamp()
    harness.send(sentinel)
    harness.poses_at(sentinel)  # everything published before it has arrived (reliable, in order)
    counts = [len(harness._with_stamp(harness.poses, s)) for s, _ in frames]
    assert counts == [1, 1, 1, 1]
    sizes = [len(harness._with_stamp(harness.poses, s)[0].poses) for s, _ in frames]
    assert sizes == [2, 0, 0, 1]
    assert harness._with_stamp(harness.poses, frames[3][0])[0].poses[0].hand.side == 0  # right


def test_latest_policy_processed_plus_dropped_equals_synced(harness):
    def totals():
        received = len(harness.poses)
        values = harness.diagnostics_values(lambda v: int(v["frames_processed"]) == received,
                                            f"diagnostics counting {received} processed frames")
        return int(values["frames_processed"]), int(values["dropped_frames"])

    harness.good_frame()
    processed0, dropped0 = totals()
    burst = [harness.next_stamp() for _ in range(6)]
    for stamp in burst:
        harness.send(stamp)
    sentinel = harness.next_stamp()
    harness.send(sentinel)
    harness.poses_at(sentinel)
    answered = sum(len(harness._with_stamp(harness.poses, s)) for s in burst)
    processed1, dropped1 = totals()
    assert processed1 - processed0 == answered + 1
    assert answered + (dropped1 - dropped0) == len(burst)


def _bad_image(stamp, kind):
    msg = Harness.image_msg(stamp)
    if kind == "encoding":
        msg.encoding, msg.step = "16UC1", IMAGE_W * 2
        msg.data = rgb_to_image_data(np.zeros((IMAGE_H, IMAGE_W, 2), np.uint8))
    else:  # one row of data missing
        msg.data = rgb_to_image_data(RGB[:-1])
    return msg


BAD_FRAMES = {
    "unsupported_encoding": (dict(image="encoding"), "bad_image", "unsupported image encoding '16UC1'", 2),
    "step_mismatch": (dict(image="short"), "bad_image", "expected step*height", 2),
    "k_zero": (dict(k=np.zeros(9)), "bad_camera_info", "all zero", 2),
    "k_nan": (dict(k=np.r_[np.nan, K_TEST.reshape(-1)[1:]]), "bad_camera_info", "non-finite", 2),
    "camera_info_missing": (dict(info=False), "bad_camera_info", "camera_info missing", 2),
    "box_outside_image": (dict(right=(200.0, 200.0, 250.0, 250.0)), "bad_box", "right hand box", 1),
    "degenerate_box": (dict(right=(40.0, 30.0, 40.0, 90.0)), "bad_box", "right hand box", 1),
    "unknown_class": (dict(object_class="999"), "unknown_class", "999", 1),
}


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_bad_input_gets_a_status_a_count_and_the_node_goes_on(harness, case):
    spec, reason, needle, bad_count = BAD_FRAMES[case]
    before = harness.diagnostics_values(lambda v: True, "a diagnostics message")
    count_before = int(before.get(f"failures_{reason}", 0))

    # Missing camera_info: stamps far from every camera_info sent (camera_info_max_age is 5 s).
    stamp = harness.next_stamp(jump_s=100 if case == "camera_info_missing" else 0)
    image = _bad_image(stamp, spec["image"]) if "image" in spec else None
    info = Harness.info_msg(stamp, spec["k"]) if "k" in spec else spec.get("info", True)
    items = [("right_hand", spec.get("right", RIGHT_BOX), 0.9), ("left_hand", LEFT_BOX, 0.8),
             (spec.get("object_class", "3"), OBJECT_A, 0.7), ("3", OBJECT_B, 0.6)]
    harness.send(stamp, items, image=image, info=info)
    msg = harness.poses_at(stamp)
    assert msg.header.frame_id == FRAME_ID
    statuses = [p.status for p in msg.poses]
    assert statuses.count(HandObjectPose.STATUS_BAD_INPUT) == bad_count, [p.status_message for p in msg.poses]
    bad = next(p for p in msg.poses if p.status == HandObjectPose.STATUS_BAD_INPUT)
    assert needle in bad.status_message
    assert bad.hand.side == 0  # the right hand (first) is affected in every case
    if bad_count == 1:
        assert msg.poses[1].status == HandObjectPose.STATUS_OK

    harness.good_frame()  # the node still answers
    values = harness.diagnostics_values(lambda v: int(v.get(f"failures_{reason}", 0)) > count_before,
                                        f"the diagnostics count of {reason}")
    assert values["__level__"] in (b"\x00", b"\x01")


def test_detections_without_image_are_counted_as_unmatched(harness):
    before = harness.diagnostics_values(lambda v: True, "a diagnostics message")
    count = int(before["unmatched_detections"])
    lonely = harness.next_stamp()
    harness.pub_dets.publish(Harness.dets_msg(lonely, [("right_hand", RIGHT_BOX, 0.9)]))
    harness.good_frame()  # its newer stamp makes the lonely detections unmatchable
    values = harness.diagnostics_values(lambda v: int(v["unmatched_detections"]) > count,
                                        "unmatched detections in the diagnostics")
    assert int(values["failures_unmatched_detections"]) >= 1
    assert harness._with_stamp(harness.poses, lonely) == []  # no image: no frame, no array


def test_diagnostics_content(harness):
    start = len(harness.diagnostics)
    harness.good_frame()
    # Rates are per diagnostics period: the image may arrive in an earlier period than its processing.
    inputs = harness.diagnostics_values(lambda v: float(v["input_rate_image_hz"]) > 0, "an input rate", start)
    assert float(inputs["input_rate_detections_hz"]) > 0 and float(inputs["input_rate_camera_info_hz"]) > 0
    values = harness.diagnostics_values(lambda v: float(v["processed_rate_hz"]) > 0, "a processed rate",
                                        start)
    for key in ("input_rate_image_hz", "input_rate_detections_hz", "input_rate_camera_info_hz",
                "processed_rate_hz", "latency_mean_ms", "latency_max_ms", "inference_mean_ms",
                "frames_processed", "dropped_frames", "unmatched_detections", "unmatched_images"):
        assert key in values, key
    assert 0 < float(values["latency_mean_ms"]) <= float(values["latency_max_ms"]) < 60_000
    assert values["device"] == "cpu" and values["queue_policy"] == "latest"
    assert values["__hardware_id__"] == "hfl_ros/cpu"


def test_thresholds_change_at_runtime_and_are_validated(harness):
    results = set_parameters(harness.session, NODE, {"hand_score_threshold": 0.85})
    assert results[0].successful
    stamp = harness.next_stamp()
    harness.send(stamp)  # the left hand scores 0.8: now ignored
    msg = harness.poses_at(stamp)
    assert [p.hand.side for p in msg.poses] == [0]
    rejected = set_parameters(harness.session, NODE, {"hand_score_threshold": 1.5})
    assert not rejected[0].successful
    read_only = set_parameters(harness.session, NODE, {"queue_policy": "all"})
    assert not read_only[0].successful
    assert set_parameters(harness.session, NODE, {"hand_score_threshold": 0.0})[0].successful
    assert len(harness.good_frame().poses) == 2
    # min_estimate_score turns OK results into LOW_CONFIDENCE, with the reason, at runtime, and back.
    assert set_parameters(harness.session, NODE, {"min_estimate_score": 1.0})[0].successful
    stamp = harness.next_stamp()
    harness.send(stamp)
    low = harness.poses_at(stamp).poses
    assert [p.status for p in low] == [HandObjectPose.STATUS_LOW_CONFIDENCE] * 2
    assert all("below min_estimate_score 1" in p.status_message for p in low)
    assert set_parameters(harness.session, NODE, {"min_estimate_score": 0.0})[0].successful
    harness.good_frame()


def test_sigterm_shuts_down_cleanly(harness):
    """Runs last: stops the module's node."""
    harness.good_frame()
    harness.proc.send_signal(signal.SIGTERM)
    assert harness.proc.wait(timeout=60) == 0
    stderr = (harness.proc.log_dir / "stderr.txt").read_text()
    assert "Traceback" not in stderr, stderr[-3000:]


# ----------------------------------------------------------------------------------------------------------
# Start-up failures


@pytest.mark.parametrize(
    ("args", "needle", "code"),
    [
        (["-p", "queue_policy:=sometimes"],
         "parameter 'queue_policy': 'sometimes' is not allowed; set it to one of latest, all", 2),
        (["-p", "checkpoint_path:=/nonexistent/model.pt"], "parameter 'checkpoint_path': file "
         "'/nonexistent/model.pt' does not exist", 2),
        (["-p", "marker_lifetime:=-1.0"], "parameter 'marker_lifetime'", 2),
        (["-p", "publish_tf:=maybe"], "parameter 'publish_tf'", 2),
    ],
)
def test_bad_parameter_is_fatal_with_its_name(args, needle, code, tmp_path):
    import os

    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"not a checkpoint")
    env = {**os.environ, "ROS_DOMAIN_ID": str(module_domain_id(__name__ + "bad")),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "hfl_ros.nodes.perception_node", "--ros-args",
           "-p", f"checkpoint_path:={ckpt}", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreadable_checkpoint_is_fatal_naming_checkpoint_path(tmp_path):
    import os

    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"not a checkpoint")
    env = {**os.environ, "ROS_DOMAIN_ID": str(module_domain_id(__name__ + "ckpt")),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "hfl_ros.nodes.perception_node", "--ros-args",
           "-p", f"checkpoint_path:={ckpt}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "parameter 'checkpoint_path': cannot load it" in proc.stderr
    assert "Traceback" not in proc.stderr

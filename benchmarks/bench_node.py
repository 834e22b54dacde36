"""Perception node overhead, and the cost of image conversions, measured in one run.

    python benchmarks/bench_node.py [--frames 20] [--trunk resnet50] [--input-size 256] [--width 640]

The node runs as its own process (one torch thread) on synthetic frames: a 640x480 rgb8 image, its
camera_info, one right hand and one object box. For each frame this script publishes the three messages and
records when the HandObjectPoseArray arrives (end-to-end latency). The node's diagnostics, published every
50 ms, give the time its ``Estimator.estimate`` call took on that same frame. The figure of merit is
``ratio`` = median over frames of latency / estimate time (target <= 1.10 on CPU). As a cross-check, the
script also times ``Estimator.estimate`` on each frame in its own process while the node is idle
(``ratio_vs_in_process_estimate``); that figure also carries the load difference between two processes on a
shared machine. Both sides use the network of the test suite's rigged node (test/rigged_perception_node.py:
random weights whose 2D outputs are replaced by projections of a known pose), so that every output (TF,
meshes, objects) is published, as with a trained model. Also reported: Image message <-> numpy conversion
times at 640x480 and 1280x720.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
TEST_DIR = REPO / "test"
sys.path[:0] = [str(REPO), str(TEST_DIR)]

NODE = "/hfl_perception"


def write_assets(root: Path, trunk: str, input_size: int) -> dict[str, str]:
    from ros_helpers import write_object_models

    from hfl_ros.data.standin_hand import write_standin_hand_model
    from hfl_ros.model.checkpoint import save_checkpoint
    from hfl_ros.model.hflnet import HFLNet

    torch.manual_seed(0)
    hand = root / "hand_model"
    right = write_standin_hand_model(hand / "STANDIN_HAND_RIGHT.pkl", "right", 0)
    write_standin_hand_model(hand / "STANDIN_HAND_LEFT.pkl", "left", 0)
    net = HFLNet(mano_path=right, trunk=trunk, input_size=input_size)
    checkpoint = save_checkpoint(root / "random_weights.pt", net, {"purpose": "benchmark"})
    return {"checkpoint_path": str(checkpoint), "mano_dir": str(hand),
            "object_models_dir": str(write_object_models(root / "objects"))}


def conversion_costs(repeats: int = 30) -> dict[str, dict[str, float]]:
    """Median milliseconds of Image -> numpy (rgb8 and bgr8) and numpy -> Image (array('B') vs tobytes)."""
    from sensor_msgs.msg import Image

    from hfl_ros.ros.convert import image_to_rgb, rgb_to_image_data

    def median_ms(fn) -> float:
        return 1e3 * statistics.median(timeit.repeat(fn, number=1, repeat=repeats))

    costs = {}
    for width, height in ((640, 480), (1280, 720)):
        rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        shape = {"height": height, "width": width, "encoding": "rgb8", "step": width * 3}
        msg = Image(**shape, data=rgb_to_image_data(rgb))
        bgr = Image(**{**shape, "encoding": "bgr8"}, data=rgb_to_image_data(rgb))
        costs[f"{width}x{height}"] = {
            "image_msg_to_numpy_rgb8_ms": median_ms(lambda m=msg: image_to_rgb(m)),
            "image_msg_to_numpy_bgr8_ms": median_ms(lambda m=bgr: image_to_rgb(m)),
            "numpy_to_image_msg_array_frombytes_ms": median_ms(
                lambda a=rgb, s=shape: Image(**s, data=rgb_to_image_data(a))),
            "numpy_to_image_msg_tobytes_ms": median_ms(lambda a=rgb, s=shape: Image(**s, data=a.tobytes())),
        }
    return costs


def _nth_inference_s(diagnostics: list, n: int) -> float | None:
    """The node's estimate time of its n-th processed frame (1-based), from the diagnostics windows; with a
    50 ms period and frames sent one at a time, a window holds at most one frame."""
    windows = []
    for msg in diagnostics:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if float(values.get("processed_rate_hz", 0)) > 0:
                windows.append((int(values["frames_processed"]), float(values["inference_mean_ms"])))
    return next((ms / 1e3 for count, ms in windows if count == n), None)


def _summary_ms(seconds: list[float]) -> dict[str, float]:
    return {"median": 1e3 * statistics.median(seconds), "mean": 1e3 * statistics.mean(seconds),
            "max": 1e3 * max(seconds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--trunk", default="resnet50")
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "bench_node.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    import rigged_perception_node  # noqa: F401 - rigs Estimator._forward here as in the node process
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticArray
    from hfl_ros.msg import HandObjectPoseArray
    from node_harness import RosSession, start_process
    from ros_helpers import module_domain_id, reliable_inputs, write_params_file
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header
    from vision_msgs.msg import BoundingBox2D, Detection2D, Detection2DArray, ObjectHypothesisWithPose
    from visualization_msgs.msg import MarkerArray

    from hfl_ros.estimator import Estimator
    from hfl_ros.ros.convert import LabelMap, detections_from_msg, image_to_rgb, rgb_to_image_data

    work = Path(tempfile.mkdtemp(prefix="bench_node_"))
    assets = write_assets(work, args.trunk, args.input_size)
    # Reliable inputs: a best-effort subscription may lose a frame, and this script waits for every one.
    params = write_params_file(work / "params.yaml", {**assets, "num_threads": 1, "device": "cpu",
                                                      **reliable_inputs(depth=5),
                                                      "diagnostics_period": 0.05})
    domain = module_domain_id("bench_node")
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), str(TEST_DIR), os.environ.get("PYTHONPATH", "")])}
    proc = start_process([sys.executable, str(TEST_DIR / "rigged_perception_node.py"), "--ros-args",
                          "--params-file", str(params)], env, work / "node")
    session = RosSession(domain, "bench_node")
    estimator = Estimator(checkpoint_path=assets["checkpoint_path"], mano_dir=assets["mano_dir"],
                          object_models=assets["object_models_dir"], device="cpu")
    w, h = args.width, args.height
    K = np.array([[500.0, 0.0, w / 2], [0.0, 500.0, h / 2], [0.0, 0.0, 1.0]])
    boxes = [("right_hand", (w * 0.40, h * 0.35, w * 0.58, h * 0.70), 0.9),
             ("3", (w * 0.47, h * 0.40, w * 0.66, h * 0.75), 0.8)]
    rng = np.random.default_rng(1)
    try:
        node = session.node
        pub_image = node.create_publisher(Image, "image", 10)
        pub_info = node.create_publisher(CameraInfo, "camera_info", 10)
        pub_dets = node.create_publisher(Detection2DArray, "detections", 10)
        sub_poses, poses = session.subscribe(HandObjectPoseArray, f"{NODE}/hand_object_poses",
                                             timestamps=True)
        sub_markers, markers = session.subscribe(MarkerArray, f"{NODE}/markers")
        _, diagnostics = session.subscribe(DiagnosticArray, "/diagnostics")
        session.wait_for(lambda: all(p.get_subscription_count() > 0 for p in (pub_image, pub_info, pub_dets))
                         and sub_poses.get_publisher_count() > 0 and sub_markers.get_publisher_count() > 0,
                         300.0, "the node", proc)
        latencies, node_estimates, estimates, statuses = [], [], [], []
        for i in range(args.warmup + args.frames):
            stamp = Time(sec=1000 + i, nanosec=0)
            header = Header(stamp=stamp, frame_id="camera_optical")
            rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            image = Image(header=header, height=h, width=w, encoding="rgb8", step=w * 3,
                          data=rgb_to_image_data(rgb))
            dets = Detection2DArray(header=header)
            for label, (x1, y1, x2, y2), score in boxes:
                hyp = ObjectHypothesisWithPose()
                hyp.hypothesis.class_id, hyp.hypothesis.score = label, score
                bbox = BoundingBox2D(size_x=x2 - x1, size_y=y2 - y1)
                bbox.center.position.x, bbox.center.position.y = (x1 + x2) / 2, (y1 + y2) / 2
                dets.detections.append(Detection2D(header=header, results=[hyp], bbox=bbox))
            pub_info.publish(CameraInfo(header=header, width=w, height=h, k=K.reshape(-1).tolist()))
            start = time.perf_counter()
            pub_image.publish(image)
            pub_dets.publish(dets)

            def arrived(s=stamp):
                return [(t, m) for t, m in poses if m.header.stamp.sec == s.sec]

            (arrival, msg), = session.wait_for(arrived, 120.0, f"the poses of frame {i}", proc)
            session.wait_for(lambda s=stamp: any(m.markers and m.markers[0].header.stamp.sec == s.sec
                                                 for m in markers), 120.0, "the markers", proc)
            node_estimate_s = session.wait_for(lambda n=i + 1: _nth_inference_s(diagnostics, n), 30.0,
                                               "the diagnostics of the frame", proc)
            frame_rgb = image_to_rgb(image)
            detections = detections_from_msg(dets, LabelMap())
            t0 = time.perf_counter()
            results = estimator.estimate(frame_rgb, K, detections)
            estimate_s = time.perf_counter() - t0
            if i >= args.warmup:
                latencies.append(arrival - start)
                node_estimates.append(node_estimate_s)
                estimates.append(estimate_s)
                statuses.append([int(p.status) for p in msg.poses])
            assert [int(r.status) for r in results] == [int(p.status) for p in msg.poses]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        session.close()

    result = {
        "benchmark": "bench_node",
        "what": "end-to-end latency (image published -> HandObjectPoseArray received) divided by "
                "Estimator.estimate time on the same frames, one run",
        "network": {"trunk": args.trunk, "input_size": args.input_size,
                    "weights": "random (rigged 2D outputs)"},
        "image": f"{w}x{h} rgb8",
        "frames": args.frames,
        "torch_threads": 1,
        "latency_ms": _summary_ms(latencies),
        "node_estimate_ms": _summary_ms(node_estimates),
        "overhead_ms": _summary_ms([a - b for a, b in zip(latencies, node_estimates, strict=True)]),
        "ratio": statistics.median(a / b for a, b in zip(latencies, node_estimates, strict=True)),
        "target_ratio_max": 1.10,
        "in_process_estimate_ms": _summary_ms(estimates),
        "ratio_vs_in_process_estimate": statistics.median(latencies) / statistics.median(estimates),
        "statuses": sorted({tuple(s) for s in statuses}),
        "image_conversion_ms": conversion_costs(),
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

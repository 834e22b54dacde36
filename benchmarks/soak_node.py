"""Soak of the live perception node: a bag looped at 30 Hz for minutes, per queue policy (issue 14, item 4).

    python benchmarks/soak_node.py [--seconds 600] [--window 60] [--rate 30] [--policies latest,all]
                                   [--bag BAG] [--out results.json]

For each policy a fresh node (test/rigged_perception_node.py: the real node, random weights whose 2D outputs
are rigged to a known pose, one torch thread) gets the frames of a bag (by default a synthetic one from
hfl_ros.demo.synthetic_bag; ``hfl-ros make-sample-bag`` writes the demo's) published in a loop at ``--rate``
Hz, stamps rewritten to keep increasing. Reported per window (a minute by default): p50 and p99 end-to-end
latency (publish to HandObjectPoseArray received), frames answered, the node's RSS; and at the end: frames
published, answered, dropped by the queue policy (the node's diagnostics), crashes (the node process ending).
Targets: RSS growth after the first window <= 5 %, p99 latency of the last window <= 1.2 x the first, no
crash. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "test"), str(REPO / "benchmarks")]

NODE = "/hfl_perception"
RSS_TARGET = 0.05
P99_TARGET = 1.2


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process (MB), None once it has ended."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def load_frames(bag: Path) -> list[tuple[Any, Any, Any]]:
    """(camera_info, image, detections) rclpy messages of each image of ``bag`` that has all three."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo, Image
    from vision_msgs.msg import Detection2DArray

    from hfl_ros.bag.frames import header_stamp_ns
    from hfl_ros.bag.reader import BagReader

    by_type = {"sensor_msgs/msg/CameraInfo": (0, CameraInfo), "sensor_msgs/msg/Image": (1, Image),
               "vision_msgs/msg/Detection2DArray": (2, Detection2DArray)}
    frames: dict[int, list[Any]] = {}
    with BagReader(bag) as reader:
        for raw in reader.messages():
            if raw.msgtype in by_type:
                slot, cls = by_type[raw.msgtype]
                frames.setdefault(header_stamp_ns(raw.data), [None] * 3)[slot] = deserialize_message(
                    bytes(raw.data), cls)
    return [tuple(parts) for _, parts in sorted(frames.items()) if all(p is not None for p in parts)]


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1e3, 2) if values else None


def soak(policy: str, frames: list[tuple[Any, Any, Any]], seconds: float, window_s: float, rate: float,
         work: Path, assets: dict[str, str], domain: int) -> dict[str, Any]:
    """One node with ``policy``; the figures of one soak."""
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticArray
    from fuzz_node import input_qos, start_node
    from hfl_ros.msg import HandObjectPoseArray
    from node_harness import RELIABLE, RosSession, stop_process
    from sensor_msgs.msg import CameraInfo, Image
    from vision_msgs.msg import Detection2DArray

    work.mkdir(parents=True, exist_ok=True)
    # the node's default input QoS (best effort, depth 5): a deep reliable input queue would add its backlog
    proc = start_node(work, domain, assets, queue_policy=policy, diagnostics_period=1.0,
                      **input_qos("raw", "best_effort", 5))
    session = RosSession(domain, f"soak_{policy}")
    node = session.node
    pubs = [node.create_publisher(t, n, RELIABLE) for t, n in ((CameraInfo, "/fuzz/camera_info"),
                                                               (Image, "/fuzz/image"),
                                                               (Detection2DArray, "/fuzz/detections"))]
    sent: dict[int, float] = {}  # stamp (ns) -> perf_counter at publish
    latencies: list[tuple[float, float]] = []  # (seconds since start, latency)
    start = time.perf_counter()

    def on_poses(msg: Any) -> None:
        now = time.perf_counter()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if stamp in sent:
            latencies.append((now - start, now - sent.pop(stamp)))

    sub_poses = node.create_subscription(HandObjectPoseArray, f"{NODE}/hand_object_poses", on_poses, RELIABLE)
    _, diagnostics = session.subscribe(DiagnosticArray, "/diagnostics")
    rss: list[tuple[float, float]] = []
    published = 0
    try:
        session.wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs)
                         and sub_poses.get_publisher_count() > 0, 300.0, "the node's topics", proc)
        stop_sampling = threading.Event()

        def sample_rss() -> None:
            while not stop_sampling.wait(1.0):
                value = rss_mb(proc.pid)
                if value is not None:
                    rss.append((time.perf_counter() - start, value))

        start = time.perf_counter()
        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        period = 1.0 / rate
        base_sec = 2_000_000
        while True:
            due = start + published * period  # a fixed-rate schedule: late ticks are not made up later
            now = time.perf_counter()
            if now - start >= seconds or proc.poll() is not None:
                break
            if due > now:
                time.sleep(due - now)
            info, image, dets = frames[published % len(frames)]
            stamp_ns = base_sec * 1_000_000_000 + round(published * period * 1e9)
            stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
            for msg in (info, image, dets):
                msg.header.stamp = stamp
            sent[stamp_ns] = time.perf_counter()
            for pub, msg in zip(pubs, (info, image, dets), strict=True):
                pub.publish(msg)
            published += 1
        crashed = proc.poll() is not None
        if not crashed:  # let the last frames through
            last = max(sent) if sent else None
            deadline = time.monotonic() + 30.0
            while last in sent and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.1)
        stop_sampling.set()
        sampler.join(5.0)
        diag = {}
        for msg in diagnostics[::-1]:
            statuses = [s for s in msg.status if NODE[1:] in s.name]
            if statuses:
                diag = {kv.key: kv.value for kv in statuses[0].values}
                break
    finally:
        crashed = proc.poll() is not None
        stop_process(proc)
        session.close()

    windows = []
    for w in range(max(1, math.ceil(seconds / window_s))):
        lo, hi = w * window_s, (w + 1) * window_s
        lat = [v for t, v in latencies if lo <= t < hi]
        mem = [v for t, v in rss if lo <= t < hi]
        windows.append({"window": w, "answered": len(lat), "p50_ms": _percentile(lat, 50),
                        "p99_ms": _percentile(lat, 99), "rss_mb": round(mem[-1], 1) if mem else None})
    rss_first = windows[0]["rss_mb"]
    rss_last = windows[-1]["rss_mb"]
    p99_first, p99_last = windows[0]["p99_ms"], windows[-1]["p99_ms"]
    growth = (rss_last - rss_first) / rss_first if rss_first and rss_last else None
    p99_ratio = p99_last / p99_first if p99_first and p99_last else None
    return {
        "policy": policy,
        "seconds": seconds,
        "rate_hz": rate,
        "published": published,
        "answered": len(latencies),
        "dropped_by_policy": int(diag.get("dropped_frames", -1)),
        "frames_processed": int(diag.get("frames_processed", -1)),
        "unmatched_images": int(diag.get("unmatched_images", -1)),
        "crashes": int(crashed),
        "rss_start_mb": round(rss[0][1], 1) if rss else None,
        "rss_end_mb": round(rss[-1][1], 1) if rss else None,
        "rss_growth_after_first_window": None if growth is None else round(growth, 4),
        "p99_last_over_first": None if p99_ratio is None else round(p99_ratio, 3),
        "targets_met": {"rss_growth": growth is not None and growth <= RSS_TARGET,
                        "p99_ratio": p99_ratio is not None and p99_ratio <= P99_TARGET,
                        "no_crash": not crashed},
        "windows": windows,
    }


def run(seconds: float, window_s: float, rate: float, policies: list[str], bag: Path | None,
        work: Path | None = None) -> dict[str, Any]:
    import platform

    import torch
    from ros_helpers import make_node_assets, module_domain_id

    from hfl_ros.demo.synthetic_bag import frame_specs, write_bag

    torch.set_num_threads(1)
    tmp = tempfile.TemporaryDirectory() if work is None else None
    directory = Path(tmp.name) if tmp is not None else work
    try:
        if bag is None:
            bag = write_bag(directory / "bag", frame_specs(30), width=320, height=240)
        frames = load_frames(bag)
        assets = make_node_assets(directory / "assets")
        results = [soak(policy, frames, seconds, window_s, rate, directory / policy, assets,
                        module_domain_id(f"soak_{policy}")) for policy in policies]
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {"benchmark": "soak_node", "host": platform.node(), "cpus": __import__("os").cpu_count(),
            "bag_frames": len(frames), "results": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="per policy (default 600)")
    parser.add_argument("--window", type=float, default=60.0, help="reporting window in seconds (default 60)")
    parser.add_argument("--rate", type=float, default=30.0, help="input frame rate (default 30)")
    parser.add_argument("--policies", default="latest,all")
    parser.add_argument("--bag", type=Path, help="bag to loop (default: a synthetic 30-frame bag)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    summary = run(args.seconds, args.window, args.rate, args.policies.split(","), args.bag)
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0 if all(all(r["targets_met"].values()) for r in summary["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())

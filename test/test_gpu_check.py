"""scripts/gpu_check.py: its CPU development mode runs every check and passes, the summary has the documented
structure, the budget skips checks, a failing check is recorded without stopping the others, and without a
GPU the CUDA mode says so in one line."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gpu_check = _load()
CHECK_NAMES = [name for name, _ in gpu_check.CHECKS]


# The GPU machine has no ROS, rosbags, pyrender, trimesh, transforms3d, tqdm or pytest: importing them fails.
DEVICE_LIKE_SITECUSTOMIZE = """
import importlib.abc, importlib.machinery, sys
BLOCKED = {"rclpy", "rosbags", "pyrender", "trimesh", "transforms3d", "tqdm", "pytest"}
class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (blocked)", name=spec.name)
    def exec_module(self, module):
        raise ModuleNotFoundError(module.__name__)
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        return importlib.machinery.ModuleSpec(name, _Loader()) if name.split(".")[0] in BLOCKED else None
sys.meta_path.insert(0, _Block())
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=env or _env(), cwd=REPO, timeout=timeout)


@pytest.mark.slow
def test_cpu_mode_runs_every_check_and_passes(tmp_path):
    """The whole quick run, with the modules the GPU machine lacks made unimportable (workers included)."""
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(DEVICE_LIKE_SITECUSTOMIZE)
    out_dir = tmp_path / "out"
    env = {**_env(), "OUT": str(out_dir)}
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), env["PYTHONPATH"]])
    probe = subprocess.run([sys.executable, "-c", "import transforms3d"], env=env, capture_output=True)
    assert probe.returncode != 0 and b"blocked" in probe.stderr
    proc = _run(["--device-under-test", "cpu", "--quick", "--threads", "2", "--budget-s", "200",
                 "--out", str(tmp_path / "summary.json")], env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert json.loads((out_dir / "gpu_check.json").read_text()) == summary  # $OUT gets the same summary
    assert summary["status"] == "pass" and summary["cpu_mode"] and summary["device_under_test"] == "cpu"
    assert [c["name"] for c in summary["checks"]] == CHECK_NAMES
    assert summary["counts"] == {"pass": len(CHECK_NAMES)} and summary["failed"] == summary["skipped"] == []
    for check in summary["checks"]:
        assert check["status"] == "pass", check
        assert check["limits"] and all(entry["ok"] or entry.get("reported_only") for entry in check["limits"])
        assert check["seconds"] >= 0 and "error" not in check
    # One line per check on stdout, then the verdict.
    lines = [line for line in proc.stdout.splitlines() if line.startswith("gpu_check: ")]
    for name in CHECK_NAMES:
        assert sum(line.split()[1] == name for line in lines) == 1, name
    assert lines[-1].startswith("gpu_check: PASS")

    checks = {c["name"]: c for c in summary["checks"]}
    fp32 = checks["model_parity_fp32_tf32_off"]
    assert set(fp32["figures"]["max_abs_difference"]) >= set(gpu_check.FP32_LIMITS)
    assert {e["name"] for e in fp32["limits"]} >= set(gpu_check.FP32_LIMITS)
    latency = checks["estimator_latency"]["figures"]["rows"]
    assert {(r["precision"], r["cudnn_benchmark"], r["batch"]) for r in latency} == {
        ("fp32", b, n) for b in (False, True) for n in (1, 2)}  # quick: batch 1 and 2; no fp16 on the CPU
    assert all(r["first_call_ms"] > 0 and r["median_ms"] > 0 for r in latency)
    e2e = checks["end_to_end_latency_640x480"]["figures"]["rows"]
    assert e2e["fp32"]["frames_per_s"] > 0
    training = checks["training_amp_and_resume"]["figures"]
    assert len(training["losses"]) == 3 and training["parameters_changed"] > 0
    assert checks["training_ddp_world_size_1"]["figures"]["backend"] == "gloo"
    cold = checks["cold_start"]["figures"]["rows"]
    assert cold["with_warm_up"]["warm_up_s"] > 0 and cold["without_warm_up"]["warm_up_s"] == 0


def test_budget_skips_checks_and_fails(tmp_path):
    out = tmp_path / "s.json"
    proc = _run(["--device-under-test", "cpu", "--quick", "--budget-s", "0", "--out", str(out)])
    assert proc.returncode == 1
    summary = json.loads(out.read_text())
    assert summary["status"] == "fail" and summary["skipped"] == CHECK_NAMES
    assert all(c["status"] == "skipped" and "budget" in c["summary"] for c in summary["checks"])


def test_without_cuda_one_line_and_exit_0(tmp_path):
    from hfl_ros.devices import cuda_unusable_reason

    if cuda_unusable_reason() is None:
        pytest.skip("this host has a usable GPU")
    env = {**_env(), "OUT": str(tmp_path)}
    proc = _run([], env=env, timeout=120)
    assert proc.returncode == 0
    assert proc.stdout.count("\n") == 1 and "no usable CUDA GPU" in proc.stdout
    assert not list(tmp_path.iterdir())  # nothing run, nothing written


def test_a_raising_check_is_recorded_and_the_next_runs(tmp_path):
    args = gpu_check.parse_args(["--device-under-test", "cpu", "--quick"])
    ctx = gpu_check.Context(args, tmp_path)

    def broken(ctx, rec):
        rec.figures["before"] = 1
        raise RuntimeError("boom")

    def limits(ctx, rec):
        rec.compare("small enough", 2.0, 1.0)
        rec.compare("reported", 5.0, 1.0, reported_only=True)
        rec.require("holds", True)

    error = gpu_check.run_check(ctx, "broken", broken)
    assert error.status == "error" and error.error == "RuntimeError: boom" and "boom" in error.traceback
    assert error.figures == {"before": 1}
    failed = gpu_check.run_check(ctx, "limits", limits)
    assert failed.status == "fail" and "small enough = 2 > 1" in failed.summary
    assert "reported" not in failed.summary
    summary = gpu_check.Summary(ctx, [tmp_path / "a" / "s.json"])
    summary.records += [error, failed]
    summary.write()
    written = json.loads((tmp_path / "a" / "s.json").read_text())
    assert written["status"] == "running" and written["failed"] == ["broken", "limits"]
    assert written["checks"][0]["traceback"].startswith("Traceback")

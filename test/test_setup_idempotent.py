"""scripts/setup.sh is idempotent: a second run on a complete environment changes nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("HFL_VENV", REPO / ".venv"))


def _snapshot() -> dict[str, float]:
    """mtimes of everything setup.sh would touch: stamps, activation file, built interfaces, site-packages."""
    site = next((VENV / "lib").glob("python3*/site-packages"))
    watched = [VENV / "hfl_ros_env.sh", *(VENV / ".hfl_stamps").glob("*"), *site.iterdir(),
               *(VENV / "share").glob("*/msg"), *(REPO / "build" / "setup").glob("*")]
    return {str(p): p.stat().st_mtime_ns for p in watched if p.exists()}


@pytest.mark.skipif(not (VENV / ".hfl_stamps").is_dir(), reason="environment not created by scripts/setup.sh")
def test_second_setup_run_changes_nothing():
    before = _snapshot()
    out = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh")], capture_output=True, text=True,
                         timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    after = _snapshot()
    changed = sorted(p for p in before if after.get(p) != before[p])
    assert not changed, f"setup.sh changed {changed[:10]} on a second run"
    assert set(after) == set(before), f"setup.sh created {sorted(set(after) - set(before))[:10]}"
    # Every step reports its time, and the expensive ones say they had nothing to do.
    lines = {ln[8:42].strip(): ln for ln in out.stdout.splitlines() if ln.startswith("[setup]")}
    for step in ("pip install (pinned)", "build vision_msgs, tf2_msgs", "build hfl_ros messages"):
        assert lines[step].rstrip().endswith("(up to date)"), lines[step]

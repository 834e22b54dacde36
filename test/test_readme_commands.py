"""The README's command lines work as written: `hfl-ros` is on PATH in a fresh shell after sourcing the
activation file, every `hfl-ros` line is accepted by the command, and the development set-up it gives is what
CI runs. (The `ros2 launch`, `hfl-ros label`/`play` and colcon lines run for real in test_ros2_cli.py.)"""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
from user_shell import ENV_FILE, REPO, SYSTEM_PATH, markdown_commands

README = REPO / "README.md"


def _readme_commands() -> list[str]:
    return [c for heading in ("Two commands", "Using it on a robot (ROS 2 Humble, Jazzy or Kilted)",
                              "Offline: labeling rosbags, training, evaluation", "Development")
            for c in markdown_commands(README, heading)]


@pytest.mark.skipif(not ENV_FILE.exists(), reason="environment not created by scripts/setup.sh")
def test_hfl_ros_is_on_path_in_a_fresh_shell_after_sourcing_the_activation_file(tmp_path):
    offline = markdown_commands(README, "Offline: labeling rosbags, training, evaluation")
    assert offline[0] == "source .venv/hfl_ros_env.sh"
    env = {"HOME": str(tmp_path), "PATH": SYSTEM_PATH, "LANG": "C.UTF-8"}
    out = subprocess.run(["bash", "-c", f"cd {shlex.quote(str(REPO))} && {offline[0]} && command -v hfl-ros "
                          "&& hfl-ros --help && cd / && hfl-ros play --help"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0] == str(REPO / "scripts" / "hfl-ros")
    assert lines[1].startswith("usage: hfl-ros [-h] COMMAND")
    assert "usage: hfl-ros play" in out.stdout and "--rate" in out.stdout


def test_every_hfl_ros_line_of_the_readme_is_accepted_by_the_command(monkeypatch):
    from hfl_ros import cli

    lines = [c for c in _readme_commands() if c.startswith("hfl-ros ")]
    assert {shlex.split(c)[1] for c in lines} >= {"label", "play", "train", "eval"}
    for line in lines:
        argv = shlex.split(line)[1:]
        monkeypatch.setattr(sys, "argv", ["hfl-ros", *argv])  # cli adds only the asked sub-command's options
        try:
            args = cli.build_parser().parse_args(argv)
        except SystemExit as exc:
            raise AssertionError(f"README line rejected by hfl-ros: {line}") from exc
        assert args.command == argv[0]


def test_the_readme_development_set_up_is_what_ci_runs():
    """The ROS 2 tools and colcon install lines of the README are those of .ci/run, before `make test`."""
    ci = (REPO / ".ci" / "run").read_text()
    commands = markdown_commands(README, "Development")
    assert commands == ["bash ../shared/ros2_tools/install.sh .venv",
                        ".venv/bin/pip install --no-deps -r .ci/requirements-colcon.txt"]
    positions = [ci.find(c) for c in commands]
    assert all(p >= 0 for p in positions), positions
    assert ci.find("bash scripts/setup.sh") < positions[0] < positions[1] < ci.rindex("make test")
    assert (REPO / ".ci" / "requirements-colcon.txt").read_text().count("==") >= 10  # pinned

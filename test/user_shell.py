"""Running the user's command lines as written, in a fresh bash that sources the project's activation file.

For the tests of the ROS 2 command-line tools (``ros2 launch``, ``ros2 topic``, ``ros2 param``, ...), which
come from ``../shared/ros2_tools`` on developer machines and CI, and from the ROS install on a robot. Also
reads the commands out of the Markdown code blocks that document them, so that the docs are what gets tested.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("HFL_VENV", REPO / ".venv"))
ENV_FILE = VENV / "hfl_ros_env.sh"
ROS2_TOOLS = REPO.parent / "shared" / "ros2_tools"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a stand-in module without __spec__ in sys.modules
        return False


def require_ros2_tools(shell: bool = True) -> None:
    """Skip unless ``ros2``, launch, launch_ros and launch_testing are installed (from ../shared/ros2_tools
    on developer machines and CI, from the ROS install on a robot), and, for tests that run commands in a
    :class:`UserShell` (``shell``), the activation file. Fails instead under CI, where .ci/run installs the
    tools whenever ../shared/ros2_tools exists."""
    if shell and not ENV_FILE.exists():
        pytest.skip(f"{ENV_FILE} is missing: run scripts/setup.sh first")
    missing = [m for m in ("launch", "launch_ros", "launch_testing", "ros2cli") if not _importable(m)]
    if not missing and ((VENV / "bin" / "ros2").exists() or shutil.which("ros2")):
        return
    if not ROS2_TOOLS.is_dir():
        pytest.skip("../shared/ros2_tools is absent: no ROS 2 launch system or `ros2` command to test with "
                    "(a robot's ROS install provides them)")
    reason = (f"../shared/ros2_tools is not installed in {VENV} (missing: {', '.join(missing) or 'ros2'}); "
              "run: bash ../shared/ros2_tools/install.sh .venv")
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def require_colcon() -> None:
    """Skip unless colcon is in the venv (.ci/run installs the pins of .ci/requirements-colcon.txt)."""
    if not (VENV / "bin" / "colcon").exists():
        reason = (f"colcon is not installed in {VENV}; run: .venv/bin/pip install --no-deps -r "
                  ".ci/requirements-colcon.txt (CI does when ../shared/ros2_tools exists)")
        if os.environ.get("CI") and ROS2_TOOLS.is_dir():
            pytest.fail(reason)
        pytest.skip(reason)


# ------------------------------------------------------------------------------------------------------------
# Commands from the docs


def markdown_commands(path: Path, heading: str) -> list[str]:
    """The command lines of the ```bash blocks under ``heading`` (up to the next heading of the same or a
    higher level): comments and blank lines dropped, backslash continuations joined."""
    level, blocks, block, fence, inside = 0, [], [], False, False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            if fence and inside and block is not None:
                blocks.append("\n".join(block))
            fence = not fence
            block = [] if fence and line.strip() == "```bash" else None
            continue
        if fence:
            if block is not None:
                block.append(line)
            continue
        match = re.match(r"^(#+) (.*?)\s*$", line)
        if match and match.group(2) == heading:
            level, inside = len(match.group(1)), True
        elif match and inside and len(match.group(1)) <= level:
            break
    assert level, f"{path.name} has no section '{heading}'"
    commands: list[str] = []
    for text in blocks:
        for line in re.sub(r"\\\n\s*", "", text).splitlines():
            line = re.sub(r"(^|\s+)#.*$", "", line).strip()
            if line:
                commands.append(line)
    return commands


def find_command(commands: list[str], prefix: str) -> str:
    """The one command starting with ``prefix``."""
    found = [c for c in commands if c.startswith(prefix)]
    assert len(found) == 1, f"expected one command starting with {prefix!r} in {commands}"
    return found[0]


# ------------------------------------------------------------------------------------------------------------
# Stand-in for RViz (a C++/Qt program that cannot run here; RViz itself is out of scope)


def make_rviz2_standin(prefix: Path) -> Path:
    """An ament prefix with a package ``rviz2`` whose executable ``rviz2`` writes its arguments, one per line,
    to the file named by $RVIZ2_STANDIN_RECORD and exits 0. Returns the prefix."""
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True, exist_ok=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "rviz2").write_text("")
    exe = prefix / "lib" / "rviz2" / "rviz2"
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text('#!/usr/bin/env bash\n# Stand-in for rviz2: records its arguments.\n'
                   'printf "%s\\n" "$@" > "${RVIZ2_STANDIN_RECORD:?}"\n')
    exe.chmod(0o755)
    return prefix


# ------------------------------------------------------------------------------------------------------------
# The shell


class UserShell:
    """Runs command lines with bash in ``cwd``, each in a fresh shell that first runs ``setup`` (for example
    ``source .venv/hfl_ros_env.sh``) in an environment with nothing but the basics and ``env``.

    Background commands run in their own process group and are stopped as Ctrl-C in a terminal stops them:
    SIGINT to the group, then a wait (SIGKILL only if that times out). :meth:`close` stops every command still
    running and the ``ros2`` daemon of this domain.
    """

    def __init__(self, cwd: Path, setup: str, env: dict[str, str], log_dir: Path) -> None:
        self.cwd, self.setup, self.log_dir = cwd, setup, log_dir
        self.env = {"HOME": os.environ.get("HOME", "/root"), "PATH": SYSTEM_PATH,
                    "LANG": os.environ.get("LANG", "C.UTF-8"), "PYTHONUNBUFFERED": "1",
                    "OMP_NUM_THREADS": "1", "ROS_LOG_DIR": str(log_dir / "ros_log"), **env}
        self.started: list[subprocess.Popen] = []
        self.daemon_used = False
        self._count = 0
        log_dir.mkdir(parents=True, exist_ok=True)

    def _argv(self, command: str) -> list[str]:
        self.daemon_used |= command.startswith("ros2 ")
        return ["bash", "-c", f"{self.setup}\ncd {shlex.quote(str(self.cwd))}\n{command}"]

    @staticmethod
    def _default_sigint() -> None:
        # A background job of a non-interactive shell starts with SIGINT ignored; Ctrl-C must work here.
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    def run(self, command: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Run ``command`` to completion; fail if it takes longer than ``timeout`` seconds."""
        proc = self.start(command)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            raise AssertionError(f"`{command}` did not finish in {timeout:.0f} s\n"
                                 f"{self.output(proc)}") from None
        self.started.remove(proc)
        out, err = (proc.log_dir / "stdout.txt").read_text(), (proc.log_dir / "stderr.txt").read_text()
        return subprocess.CompletedProcess(command, proc.returncode, out, err)

    def check(self, command: str, timeout: float = 120.0) -> str:
        """Run ``command``, assert that it exits 0, and return its standard output."""
        result = self.run(command, timeout)
        assert result.returncode == 0, (f"`{command}` exited with {result.returncode}\n"
                                        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result.stdout

    def start(self, command: str) -> subprocess.Popen:
        """Start ``command`` in the background, its output in files (see :meth:`output`)."""
        self._count += 1
        log_dir = self.log_dir / f"{self._count:02d}_{re.sub(r'[^A-Za-z0-9]+', '_', command)[:40]}"
        log_dir.mkdir(parents=True)
        (log_dir / "command.txt").write_text(command + "\n")
        with open(log_dir / "stdout.txt", "w") as out, open(log_dir / "stderr.txt", "w") as err:
            proc = subprocess.Popen(self._argv(command), env=self.env, stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=self._default_sigint)
        proc.log_dir = log_dir  # type: ignore[attr-defined]  (read by node_harness.process_output)
        proc.command = command  # type: ignore[attr-defined]
        self.started.append(proc)
        return proc

    @staticmethod
    def output(proc: subprocess.Popen, tail: int = 6000) -> str:
        parts = [f"$ {proc.command}"]  # type: ignore[attr-defined]
        for name in ("stdout.txt", "stderr.txt"):
            text = (proc.log_dir / name).read_text(errors="replace")  # type: ignore[attr-defined]
            parts.append(f"--- {name}\n{text[-tail:]}")
        return "\n".join(parts)

    def stop(self, proc: subprocess.Popen, timeout: float = 30.0) -> int:
        """Ctrl-C: SIGINT to the command's process group, then wait for the group to be gone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
        deadline = time.monotonic() + timeout
        while _group_alive(proc.pid) and time.monotonic() < deadline:  # its children still shutting down
            time.sleep(0.05)
        if _group_alive(proc.pid) or proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc in self.started:
            self.started.remove(proc)
        return proc.returncode

    def close(self) -> None:
        for proc in list(self.started):
            self.stop(proc)
        if self.daemon_used:
            self.run("ros2 daemon stop", timeout=60)


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process of process group ``pgid`` remains."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            return True
    return False


def wait_until(check: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> object:
    """Re-run ``check`` (e.g. a command whose output is parsed) until it returns a truthy value; fail after
    ``timeout`` seconds with the last value. For conditions only observable by running a command again."""
    deadline = time.monotonic() + timeout
    value: object = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}; last: {value!r}")

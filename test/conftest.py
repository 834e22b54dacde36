"""Shared pytest fixtures. ROS tests each get their own ROS_DOMAIN_ID so that concurrent runs never mix."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_domain_counter = itertools.count()


def _next_domain_id() -> int:
    # Domain ids 1..101 are safe for Fast DDS port arithmetic; spread by pid so parallel runs differ.
    return 1 + (os.getpid() * 7 + next(_domain_counter) * 13) % 100


@pytest.fixture
def ros_domain_id(monkeypatch) -> int:
    """A fresh ROS_DOMAIN_ID, exported to this process and to the subprocesses it starts."""
    domain = _next_domain_id()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    return domain


@pytest.fixture
def subprocess_env(ros_domain_id) -> dict[str, str]:
    """Environment for child processes: the same domain, the source tree first on PYTHONPATH, unbuffered."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(ros_domain_id)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@pytest.fixture(scope="session")
def python_exe() -> str:
    return sys.executable

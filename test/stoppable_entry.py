"""Test double: an entry point (the perception node, ``hfl-ros``) with chosen moments of its life made long
and announced, so that a test can send a stop signal exactly then.

    HFL_TEST_PAUSES="loading=30,forward=0.5" python stoppable_entry.py node --ros-args ...
    HFL_TEST_PAUSES="forward=0.4" python stoppable_entry.py hfl-ros label BAG --out DIR ...
    HFL_TEST_PAUSES="step=0.3" python stoppable_entry.py hfl-ros train --config FILE ...

Before each paused moment it prints ``PAUSE <moment> <n>`` on stderr (n counts from 1), then sleeps, on the
thread where the moment happens; a signal interrupts a sleep of the main thread at once. Moments:

- ``arguments``: the node's command-line parsing, or the option parsing of ``hfl-ros label``;
- ``loading``: the Estimator's construction (model and assets);
- ``forward``: each network forward (the node's first one is its warm-up, on the main thread);
- ``finalise``: ``hfl-ros label`` closing its outputs (``LabelSink.close``);
- ``building``: ``hfl-ros train`` building its data and network (``Trainer.__init__``);
- ``step``: each training step (``Trainer.train_step``).

Nothing else changes: the real entry point (``main``) handles the signals and the stop.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from hfl_ros.stop_signals import exit_process, install

install()  # what the real entry points do first

PAUSES = {name: float(seconds) for name, seconds in
          (item.split("=") for item in os.environ.get("HFL_TEST_PAUSES", "").split(",") if item)}
_counts: dict[str, int] = {}
_lock = threading.Lock()


def _paused(moment: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if moment in PAUSES:
            with _lock:
                count = _counts[moment] = _counts.get(moment, 0) + 1
            print(f"PAUSE {moment} {count}", file=sys.stderr, flush=True)
            time.sleep(PAUSES[moment])
        return fn(*args, **kwargs)

    return wrapper


def _rig() -> None:
    from hfl_ros.bag import label_cli, label_output
    from hfl_ros.estimator import Estimator
    from hfl_ros.nodes import perception_node
    from hfl_ros.train.trainer import Trainer

    Estimator.__init__ = _paused("loading", Estimator.__init__)
    Estimator._forward = _paused("forward", Estimator._forward)
    perception_node.parse_arguments = _paused("arguments", perception_node.parse_arguments)
    label_cli.options_from_args = _paused("arguments", label_cli.options_from_args)
    label_output.LabelSink.close = _paused("finalise", label_output.LabelSink.close)
    Trainer.__init__ = _paused("building", Trainer.__init__)
    Trainer.train_step = _paused("step", Trainer.train_step)


if __name__ == "__main__":
    _rig()
    entry, rest = sys.argv[1], sys.argv[2:]
    if entry == "node":
        from hfl_ros.nodes.perception_node import main

        exit_process(main(["perception_node", *rest]))
    from hfl_ros.cli import main as cli_main

    exit_process(cli_main(rest))

"""The perception node's process: ``ros2 run hfl_ros perception_node [--managed] --ros-args ...``.

Run it with ``ros2 run hfl_ros perception_node --ros-args --params-file config/perception.yaml`` or through
``ros2 launch hfl_ros perception.launch.py`` (``managed:=true`` for the lifecycle node). See docs/node.md.

How it starts and stops:

- SIGINT and SIGTERM are handled from the first line of :func:`main`, before rclpy, torch or the node's
  modules are imported. Until the node runs they interrupt whatever is under way (argument parsing, model
  loading, warm-up); the process then ends with exit code 0 and one line saying it stopped.
- While the node runs, the executor spins on a thread of its own and the main thread waits for a signal,
  then stops: the frame being processed finishes, queued frames are dropped, subscriptions, publishers and
  the ROS context are closed. ``ready`` is logged once that is in place.
- Every start-up failure is one FATAL line naming the parameter at fault and exit code 2.
- A managed node loads its model on ``configure``; the loading runs on the main thread, where a signal can
  interrupt it, while the executor thread that called ``configure`` waits for it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from hfl_ros.ros.names import PERCEPTION_NODE
from hfl_ros.ros.node_logging import one_line
from hfl_ros.ros.params import ParameterError
from hfl_ros.stop_signals import Interrupted, StopSignals, install, report_stop, shutdown_rclpy

EXIT_STARTUP_FAILURE = 2


class MainThreadCalls:
    """Functions that other threads hand to the main thread, where a stop signal can interrupt them."""

    def __init__(self, stop: StopSignals) -> None:
        self._stop = stop
        self._pending: deque[tuple[Callable[[], Any], concurrent.futures.Future]] = deque()
        self._closed = False

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the main thread and return its result (from any other thread); raises what it
        raises, or :class:`Interrupted` when the process stops first."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._pending.append((fn, future))
        while True:
            try:
                return future.result(timeout=0.1)
            except concurrent.futures.TimeoutError:
                if self._closed and future.cancel():
                    raise Interrupted(self._stop.signum or 15) from None

    def run_pending(self) -> None:
        """Run the functions handed over so far (main thread; a stop signal interrupts them)."""
        while self._pending and not self._closed:
            fn, future = self._pending.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                with self._stop.interruptible():
                    result = fn()
            except KeyboardInterrupt as exc:
                future.set_exception(Interrupted(getattr(exc, "signum", None) or 2))
                raise
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

    def close(self) -> None:
        """Refuse further calls; those waiting get :class:`Interrupted`."""
        self._closed = True
        while self._pending:
            _, future = self._pending.popleft()
            if future.set_running_or_notify_cancel():
                future.set_exception(Interrupted(self._stop.signum or 15))


class _Spinner:
    """Spins the executor on a thread of its own until :meth:`stop`."""

    def __init__(self, executor: Any, logger: Any) -> None:
        self._executor, self._logger = executor, logger
        self._stopping = False
        self.failed = False
        self._thread = threading.Thread(target=self._spin, name="hfl_spin", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _spin(self) -> None:
        try:
            while not self._stopping:
                self._executor.spin_once(timeout_sec=0.1)
        except Exception:
            if not self._stopping:  # a bug, not the stop: say so, the main thread ends the process
                import traceback

                self.failed = True
                self._logger.error(f"the executor stopped: {traceback.format_exc()}")

    def stop(self) -> None:
        self._stopping = True
        self._thread.join(timeout=1.0)


def parse_arguments(args: list[str]) -> argparse.Namespace:
    """The node's own command-line options (those before ``--ros-args``)."""
    from rclpy.utilities import remove_ros_args

    parser = argparse.ArgumentParser(prog="perception_node",
                                     description="HFL-Net hand-object perception node")
    parser.add_argument("--managed", nargs="?", const="true", default="false", type=str.lower,
                        choices=("true", "false"),
                        help="run as a ROS 2 lifecycle (managed) node: configure loads the model, activate "
                             "starts processing (default false)")
    return parser.parse_args(remove_ros_args(args)[1:])


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run hfl_ros perception_node``; returns the process exit code."""
    stop = install()  # first: from here on Ctrl-C and SIGTERM end the process cleanly
    args = list(sys.argv if args is None else args)
    node = executor = spinner = calls = logger = None
    code = 0
    try:
        options = parse_arguments(args)
        import rclpy
        import rclpy.logging
        from rclpy.signals import SignalHandlerOptions

        logger = rclpy.logging.get_logger(PERCEPTION_NODE)
        try:
            # rclpy's own handlers would shut the context down under the executor: the stop is ours.
            rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        except Exception as exc:  # malformed --ros-args
            logger.fatal(f"cannot start: the ROS arguments are invalid: {one_line(exc)}")
            return EXIT_STARTUP_FAILURE
        from rclpy.executors import MultiThreadedExecutor

        from hfl_ros.nodes.perception import ManagedPerceptionNode, PerceptionNode

        if options.managed == "true":
            calls = MainThreadCalls(stop)
            node = ManagedPerceptionNode(run_on_main=calls.call)
        else:
            node = PerceptionNode()
        logger = node.get_logger()
        if calls is None:
            node.load()
            node.open()
        executor = MultiThreadedExecutor(num_threads=4)
        executor.add_node(node)
        with stop.deferred():
            spinner = _Spinner(executor, logger)
            if calls is None:
                logger.info(f"ready: {node.ready_text()}")
            else:
                name = node.get_fully_qualified_name()
                logger.info(f"ready: managed node, unconfigured; start it with `ros2 lifecycle set {name} "
                            f"configure` then `ros2 lifecycle set {name} activate`")
            while not stop.requested and spinner.alive:
                if calls is not None:
                    calls.run_pending()
                stop.wait(0.05)
            if spinner.failed:
                code = 1
    except Interrupted:
        pass
    except ParameterError as exc:
        if logger is None:
            print(f"[FATAL] [{PERCEPTION_NODE}]: {one_line(exc)}", file=sys.stderr)
        else:
            logger.fatal(one_line(exc))
        code = EXIT_STARTUP_FAILURE
    finally:
        with stop.deferred():  # a second Ctrl-C (ros2 launch sends one) must not break off the stop
            _stop_node(node, executor, spinner, calls, stop, logger)
    return code


def _stop_node(node: Any, executor: Any, spinner: _Spinner | None, calls: MainThreadCalls | None,
               stop: StopSignals, logger: Any) -> None:
    """Stop in the order that cannot block: the loader, the spinning, the inputs and worker, the executor's
    threads; then the node and the ROS context."""
    if calls is not None:
        calls.close()
    if spinner is not None:
        spinner.stop()
    dropped = node.close() if node is not None else 0
    if executor is not None:
        executor.shutdown(timeout_sec=1.0)
    if stop.requested:
        detail = node.stopped_text(dropped) if node is not None else "before the node was created"
        report_stop(logger, PERCEPTION_NODE, f"stopped ({stop.name}): {detail}")
    if node is not None:
        node.destroy_node()
    shutdown_rclpy()


if __name__ == "__main__":
    from hfl_ros.stop_signals import exit_process

    exit_process(main(sys.argv))

#!/usr/bin/env python3
"""Train within a wall-clock budget: measure the step rate, size the epochs and the LR drop to fit, export.

    python scripts/train_timeboxed.py --config config/train_demo_gpu.yaml --budget-s 420 --out OUT \\
        [--val-split evaluation] [--set section.key=value ...]

For a GPU lent for minutes (the demo model's second stage, docs/demo.md): after ``--probe-steps`` steps
the step rate is known, so the run gets as many whole epochs as fit in the budget, with the learning rate
dropped by ``optim.lr_gamma`` for the last ``--drop-fraction`` of them (the config's epochs and lr_step are
replaced). With ``--val-split`` a held-out split is scored every ``--val-every`` steps and the best weights
are the ones returned. A watchdog stops training at the budget whatever happens, so the weights (float32,
in parts that fit a file-size limit), the log and ``timeboxed.json`` (figures of the run) are always written
to OUT ($OUT when set). Export the shipped fp16 file from the rejoined weights with
``python -m hfl_ros.demo.export_model``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable from a plain checkout


def write_weights_in_parts(trainer, path: Path, part_mib: float) -> list[str]:
    """The network's weights in our checkpoint format (float32, no optimizer state), cut into parts of at most
    ``part_mib`` MiB named ``<path>.partNN``: ``cat <path>.part* > <path>`` restores the file."""
    from hfl_ros.model.checkpoint import save_checkpoint

    save_checkpoint(path, trainer.net, trainer.config.to_dict(),
                    train_state={"epoch": trainer.state.epoch, "batch_in_epoch": trainer.state.batch_in_epoch,
                                 "global_step": trainer.state.global_step})
    data, size = path.read_bytes(), int(part_mib * 2**20)
    names = []
    for i in range(0, len(data), size):
        part = path.with_name(f"{path.name}.part{i // size:02d}")
        part.write_bytes(data[i:i + size])
        names.append(part.name)
    path.unlink()
    return names


class Validation:
    """The mean training loss of a held-out split (no augmentation, evaluation mode), with the best weights
    seen kept in memory."""

    def __init__(self, trainer, config, split: str):
        from torch.utils.data import DataLoader

        from hfl_ros.data.torch_dataset import HandObjectTrainingDataset
        from hfl_ros.train.trainer import build_samples

        data = dataclasses.replace(config.data, split=split)
        samples = build_samples(dataclasses.replace(config, data=data))
        dataset = HandObjectTrainingDataset(samples, input_size=trainer.net.input_size, augment=None)
        self.loader = DataLoader(dataset, batch_size=config.run.batch_size,
                                 num_workers=min(4, config.data.workers))
        self.trainer = trainer
        self.history: list[dict] = []
        self.best: tuple[float, int, dict] | None = None

    def score(self) -> float:
        import torch

        from hfl_ros.model import fuse_for_cpu

        trainer = self.trainer
        if trainer.device.type == "cpu":
            fuse_for_cpu(trainer.net)  # idempotent; the fused kernels run only in eval mode without autograd
        trainer.model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in self.loader:
                batch = {k: v.to(trainer.device) for k, v in batch.items()}
                out = trainer.model(batch["image"], batch["hand_box"], batch["object_box"])
                loss, _ = trainer.loss_fn(out, batch)
                total, count = total + float(loss) * len(batch["image"]), count + len(batch["image"])
        trainer.model.train()
        value, step = total / max(count, 1), trainer.state.global_step
        self.history.append({"step": step, "loss": value})
        print(f"validation at step {step}: {value:.5g}", flush=True)
        if self.best is None or value < self.best[0]:
            state = {k: v.detach().to("cpu", copy=True) for k, v in trainer.net.state_dict().items()}
            self.best = (value, step, state)
        return value

    def restore_best(self) -> int | None:
        """Put the best weights back into the network; returns their step."""
        if self.best is None:
            return None
        self.trainer.net.load_state_dict(self.best[2])
        return self.best[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--budget-s", type=float, required=True, help="wall-clock seconds for everything")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="output folder (default $OUT)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--probe-steps", type=int, default=60)
    parser.add_argument("--drop-fraction", type=float, default=0.2, help="share of epochs at the lower LR")
    parser.add_argument("--reserve-s", type=float, default=25.0, help="kept for the final save and export")
    parser.add_argument("--val-split", help="split of data.root scored (no augmentation) every --val-every "
                        "steps; the weights returned are those of the best score")
    parser.add_argument("--val-every", type=int, default=200)
    parser.add_argument("--part-mib", type=float, default=15.0,
                        help="weights are written in parts of at most this size (rejoin with cat)")
    args = parser.parse_args(argv)
    if not args.out:
        parser.error("--out or $OUT is required")
    start = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import cv2
    import torch

    cv2.setNumThreads(1)  # the loader's workers are the parallelism
    from hfl_ros.errors import InputError
    from hfl_ros.train.config import load_config
    from hfl_ros.train.trainer import Trainer

    config = load_config(args.config, args.set)
    trainer = Trainer(config)
    summary: dict = {
        "config": args.config, "overrides": args.set, "budget_s": args.budget_s,
        "device": str(trainer.device), "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda" else None,
        "train_frames": len(trainer.dataset), "batch_size": config.run.batch_size,
        "steps_per_epoch": trainer.steps_per_epoch,
    }
    stopped_by: list[str] = []

    def stop(signum: int, _frame) -> None:  # Ctrl-C or SIGTERM: stop like the budget does, weights written
        stopped_by.append(signal.Signals(signum).name)
        trainer.request_stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    deadline = start + args.budget_s - args.reserve_s
    watchdog = threading.Timer(max(1.0, deadline - time.monotonic()), trainer.request_stop)
    watchdog.daemon = True
    watchdog.start()

    def write_summary() -> None:
        (out / "timeboxed.json").write_text(json.dumps(summary, indent=1))

    warm = max(5, args.probe_steps // 4)
    trainer.train(max_steps=warm)  # worker start-up, cuDNN autotuning
    tick, first = time.monotonic(), trainer.state.global_step
    trainer.train(max_steps=first + args.probe_steps)
    rate = (trainer.state.global_step - first) / max(time.monotonic() - tick, 1e-6)
    steps_left = max(0.0, deadline - time.monotonic()) * rate * 0.95
    epochs = max(1, int((trainer.state.global_step + steps_left) // trainer.steps_per_epoch))
    lr_step = max(1, round(epochs * (1.0 - args.drop_fraction)))
    trainer.config.optim.epochs = epochs
    trainer.scheduler.step_size = lr_step
    summary.update(probe_steps_per_s=rate, epochs=epochs, lr_step=lr_step,
                   samples_per_s=rate * config.run.batch_size)
    write_summary()
    print(f"{rate:.2f} steps/s: {epochs} epochs of {trainer.steps_per_epoch} steps, "
          f"LR x{config.optim.lr_gamma} from epoch {lr_step + 1}", flush=True)

    history: list = []
    validation = Validation(trainer, config, args.val_split) if args.val_split else None
    try:
        while True:
            if validation is None:
                history += trainer.train().history
                break
            validation.score()
            before = trainer.state.global_step
            history += trainer.train(max_steps=before + args.val_every).history
            if trainer.state.global_step < before + args.val_every:  # the epochs or the budget are done
                validation.score()
                break
    except InputError as exc:  # a run of non-finite steps: the weights are those of the last good step
        summary["stopped_by_error"] = str(exc)
        print(f"training stopped: {exc}", flush=True)
    watchdog.cancel()
    if validation is not None:
        summary["validation"] = validation.history
        summary["returned_step"] = validation.restore_best()
    summary.update(
        steps=trainer.state.global_step, epochs_done=trainer.state.epoch,
        stopped_by_watchdog=trainer.state.epoch < epochs, train_seconds=time.monotonic() - start,
        last_lr=trainer.optimizer.param_groups[0]["lr"],
        loss_last_100=sum(h["loss"] for h in history[-100:]) / max(1, len(history[-100:])),
    )
    write_summary()
    summary["weights_parts"] = write_weights_in_parts(trainer, out / "weights_fp32.pt", args.part_mib)
    log = Path(config.run.out_dir) / "log.csv"
    if log.is_file():
        shutil.copy(log, out / "log.csv")
    if stopped_by:
        summary["stopped_by_signal"] = stopped_by[0]
    summary["total_seconds"] = time.monotonic() - start
    write_summary()
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

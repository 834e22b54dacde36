"""The training loop: the paper's recipe (spec §7) with exact resume, AMP on CUDA and DDP through torchrun.

Resume restores the network, optimizer, scheduler, AMP scaler, RNG states, epoch, step and the position in the
epoch's data order, so a run stopped after N steps and resumed continues exactly as an uninterrupted run would
(the augmentation of each item is seeded by (seed, epoch, position), independent of workers).
"""

from __future__ import annotations

import csv
import math
import os
import random
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.sample import HandObjectSample
from ..data.torch_dataset import EpochSampler, HandObjectTrainingDataset
from ..devices import resolve_device
from ..errors import CheckpointError, InputError
from ..model.checkpoint import (
    load_official_checkpoint,
    load_state_dict_strict,
    read_checkpoint_file,
    save_checkpoint,
)
from ..model.hflnet import HFLNet
from .config import TrainConfig, config_from_dict
from .losses import HFLNetLoss
from .schedule import make_scheduler, parameter_groups
from .weight_average import WeightAverage

LAST_CHECKPOINT = "checkpoint_last.pt"
MAX_SKIPPED_IN_A_ROW = 10  # steps with non-finite gradients tolerated in a row before the run stops
AMP_SKIP_FACTOR = 4  # with AMP, that many times more (the scaler's own overflow skips come in runs)


# -- distributed
@dataclass(frozen=True)
class DistributedContext:
    """Rank and world size from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK)."""

    enabled: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> DistributedContext:
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            return cls()
        env = os.environ
        return cls(True, int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def init(self, device: torch.device) -> None:
        import torch.distributed as dist

        if self.enabled and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")


def training_device(name: str, ctx: DistributedContext) -> torch.device:
    """The device of this process (under torchrun: its LOCAL_RANK GPU), made current for CUDA."""
    resolved = resolve_device(name, local_rank=ctx.local_rank if ctx.enabled else None)
    if resolved.fallback_reason:
        warnings.warn(f"run.device {name!r}: training on the CPU: {resolved.fallback_reason}", stacklevel=2)
    device = resolved.device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def configure_backends(device: torch.device, deterministic: bool, tf32: bool = True) -> None:
    """cuDNN autotuning and TF32 (``tf32``) for CUDA training, or the settings of a repeatable CUDA run.

    Deterministic CUDA needs cuBLAS's fixed workspace (set before the first cuBLAS call). The bilinear
    upsampling of the FPN has no deterministic CUDA backward; it is allowed with a warning (warn_only) rather
    than stopping the run, so "deterministic" means every other kernel is.
    """
    if deterministic:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: the autotuned kernels pay off after a step
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32 and not deterministic
        torch.backends.cudnn.allow_tf32 = tf32 and not deterministic


def agree_on_all_ranks(norm: torch.Tensor, go_on: bool, distributed: bool) -> torch.Tensor:
    """[finite, go on]: 1.0 when the gradient norm is finite / no stop is asked for on every rank, else 0.0
    (a float tensor on the norm's device), in one all-reduce.

    Under DDP the ranks must agree to skip a step together: a rank that stepped while another skipped would
    leave their weights apart (and a rank that raised would leave the others waiting in the next all-reduce).
    Likewise they stop together: a stop signal reaches each rank at its own moment, and a rank that left the
    loop alone would leave the others waiting.
    """
    flags = torch.stack([torch.isfinite(norm).float(), norm.new_tensor(1.0 if go_on else 0.0).float()])
    if distributed:
        import torch.distributed as dist

        dist.all_reduce(flags, op=dist.ReduceOp.MIN)
    return flags


# -- RNG state
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss),
                  float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # this process's GPU only: resumable on any GPU count
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, list | tuple):  # older checkpoints kept one state per visible GPU
            cuda = cuda[min(torch.cuda.current_device(), len(cuda) - 1)] if cuda else None
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)


# -- logging
class RunLogger:
    """Scalars to ``<out>/log.csv`` and, when the ``tensorboard`` package is installed, to TensorBoard too."""

    def __init__(self, out_dir: Path, enabled: bool = True):
        self.writer = None
        self.csv_path: Path | None = None
        self._fields: list[str] | None = None
        if not enabled:
            return
        self.csv_path = out_dir / "log.csv"
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        self.writer = SummaryWriter(str(out_dir / "tensorboard"))

    def log(self, step: int, values: dict[str, float]) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
            self.writer.flush()
        if self.csv_path is None:
            return
        row = {"step": step, **values}
        if self._fields is None:
            if self.csv_path.is_file() and self.csv_path.stat().st_size:
                with self.csv_path.open() as f:
                    self._fields = next(csv.reader(f))
            else:
                self._fields = list(row)
                with self.csv_path.open("w", newline="") as f:
                    csv.writer(f).writerow(self._fields)
        with self.csv_path.open("a", newline="") as f:
            csv.DictWriter(f, self._fields, extrasaction="ignore").writerow(row)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# -- building blocks
def build_network(config: TrainConfig, *, initialise: bool = True) -> HFLNet:
    """The network a config describes, with its first ``model.frozen_stages`` trunk stages frozen.

    With ``initialise`` its weights come from ``model.init_checkpoint`` when one is set, else the trunk's from
    ImageNet when ``model.imagenet_weights``; without (a resumed run) they are left as built.
    """
    m = config.model
    from_checkpoint = initialise and m.init_checkpoint is not None
    if m.mano_dir is None:
        raise InputError(
            "training needs the right-hand MANO model for its targets: set model.mano_dir to the directory "
            "holding MANO_RIGHT.pkl (or the stand-in hand model)"
        )
    try:
        net = HFLNet(
            m.mano_dir,
            m.variant,
            trunk=m.trunk,
            heads=m.heads,
            imagenet_weights=initialise and m.imagenet_weights and not from_checkpoint,
            input_size=m.input_size,
            roi_res=m.roi_res,
            feature_channels=m.feature_channels,
        )
    except ValueError as exc:
        raise InputError(f"bad model config: {exc}") from None
    if from_checkpoint:
        load_official_checkpoint(net, m.init_checkpoint)
    net.base_net.freeze(m.frozen_stages)
    return net


def build_samples(config: TrainConfig) -> Sequence[HandObjectSample]:
    """The dataset reader a config names."""
    d = config.data
    if d.root is None:
        raise InputError("data.root is not set (the dataset folder)")
    if d.kind == "ho3d":
        from ..data.ho3d import HO3DDataset

        return HO3DDataset(d.root, d.split, models_dir=d.models_dir, version=d.version, use_json=d.use_json)
    from ..data.dexycb import DexYCBDataset

    mano_dir = d.mano_dir or config.model.mano_dir
    return DexYCBDataset(d.root, d.split, mano_dir=mano_dir, models_dir=d.models_dir, use_json=d.use_json)


def scheduler_epoch_end(scheduler, epoch: int, stop_epoch: int | None) -> None:
    """Step the LR schedule at the end of 0-based ``epoch`` unless it is past ``stop_epoch`` (DexYCB: 35)."""
    if stop_epoch is None or epoch <= stop_epoch:
        scheduler.step()


@dataclass
class TrainState:
    epoch: int = 0  # current epoch (0-based)
    batch_in_epoch: int = 0  # batches of this epoch already done
    global_step: int = 0  # optimizer steps done


@dataclass
class TrainResult:
    state: TrainState
    checkpoint: Path | None
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per step


class Trainer:
    """Train HFL-Net from a :class:`TrainConfig`.

    ``samples`` replaces the dataset the config names (any sequence of HandObjectSample); ``resume`` is a
    checkpoint written by a previous run (its model configuration must match).
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        samples: Sequence[HandObjectSample] | None = None,
        resume: str | Path | None = None,
    ):
        self.config = config.validate()
        run = config.run
        self.dist = DistributedContext.from_env()
        self.device = training_device(run.device, self.dist)
        self.dist.init(self.device)
        configure_backends(self.device, run.deterministic, run.tf32)
        self.amp = bool(run.amp and self.device.type == "cuda")
        self.out_dir = Path(run.out_dir)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)

        seed_everything(run.seed)
        self.net = build_network(config, initialise=resume is None).to(self.device)
        self.loss_fn = HFLNetLoss(self.net.mano_branch.mano_layer, config.loss)
        o = config.optim
        self.optimizer = torch.optim.Adam(
            parameter_groups(self.net, o.lr, o.trunk_lr_factor), lr=o.lr, weight_decay=o.weight_decay,
            fused=True if o.fused else None,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.ema = WeightAverage(self.net, o.ema_decay) if o.ema_decay > 0 else None

        self.samples = samples if samples is not None else build_samples(config)
        augment = config.augment if config.augment.enabled else None
        self.dataset = HandObjectTrainingDataset(
            self.samples, input_size=self.net.input_size, augment=augment
        )
        if run.batch_size % self.dist.world_size:
            raise InputError(
                f"batch_size {run.batch_size} is not divisible by the world size {self.dist.world_size}"
            )
        self.batch_per_rank = run.batch_size // self.dist.world_size
        self.sampler = EpochSampler(
            len(self.dataset), seed=run.seed, rank=self.dist.rank, world_size=self.dist.world_size
        )
        self.steps_per_epoch = self.sampler.per_rank // self.batch_per_rank
        if self.steps_per_epoch == 0:
            raise InputError(
                f"the dataset has {len(self.dataset)} samples, fewer than one batch of {run.batch_size}; "
                "lower run.batch_size"
            )
        self.scheduler = make_scheduler(
            self.optimizer, o.schedule, lr_step=o.lr_step, lr_gamma=o.lr_gamma,
            total_steps=o.epochs * self.steps_per_epoch, min_lr_factor=o.min_lr_factor,
        )
        self._data_loader: DataLoader | None = None
        self._stop = threading.Event()
        self._stop_when: Callable[[], bool] = lambda: False  # e.g. "a stop signal has arrived" (train())
        self._stop_agreed = False
        self.last_skip = ""
        self.state = TrainState()
        if resume is not None:
            self.load(resume)
        self.model: torch.nn.Module = self.net
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.net, device_ids=ids)

    # -- checkpoints
    def save(self, path: Path) -> Path:
        return save_checkpoint(
            path,
            self.net,
            self.config.to_dict(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict() if self.amp else None,
            train_state={"epoch": self.state.epoch, "batch_in_epoch": self.state.batch_in_epoch,
                         "global_step": self.state.global_step},
            rng=rng_state(),
            ema=self.ema.to_checkpoint() if self.ema is not None else None,
        )

    def load(self, path: str | Path) -> None:
        """Restore a training checkpoint written by :meth:`save`."""
        obj = read_checkpoint_file(path, map_location="cpu")
        if not isinstance(obj, dict) or "optimizer" not in obj or "train_state" not in obj:
            raise CheckpointError(f"{path} is not a training checkpoint (no optimizer or train_state)")
        if obj.get("model") != self.net.config:
            raise CheckpointError(
                f"{path} was trained with model {obj.get('model')}, this run builds {self.net.config}"
            )
        load_state_dict_strict(self.net, obj["state_dict"], f"checkpoint {path}")
        self.optimizer.load_state_dict(obj["optimizer"])
        self.scheduler.load_state_dict(obj["scheduler"])
        if self.amp and obj.get("scaler"):
            self.scaler.load_state_dict(obj["scaler"])
        self.state = TrainState(**obj["train_state"])
        set_rng_state(obj["rng"])
        if self.ema is not None:
            if isinstance(obj.get("ema"), dict):
                self.ema.load_checkpoint(obj["ema"])
            else:  # a run that had no average: it starts from the resumed weights
                self.ema = WeightAverage(self.net, self.ema.decay)

    # -- loop
    def _loader(self) -> DataLoader:
        """The data loader, made once: its workers persist over epochs (the sampler's epoch is read in this
        process at the start of each pass)."""
        if self._data_loader is not None:
            return self._data_loader
        workers = self.config.data.workers
        self._data_loader = DataLoader(
            self.dataset,
            batch_size=self.batch_per_rank,
            sampler=self.sampler,
            num_workers=workers,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            worker_init_fn=_ignore_interrupts,
            prefetch_factor=4 if workers > 0 else None,
        )
        return self._data_loader

    def train_step(self, batch: dict[str, torch.Tensor]) -> tuple[float, dict[str, float], bool]:
        """One optimizer step on a batch; returns (total loss, loss terms, whether the step was applied).

        A step whose gradient norm is not finite is skipped (with AMP the scaler does so by itself), and the
        BatchNorm statistics that its forward pass updated are put back. The norm is taken after the
        DDP all-reduce and the decision is agreed over all ranks, so they skip together. The loss terms come
        to the host in one copy after the step (one synchronisation per step on CUDA).
        """
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        scheduled = self._apply_warmup()
        buffers = [b for m in self.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                   for b in m.buffers()]
        saved = [b.detach().clone() for b in buffers]
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            out = self.model(batch["image"], batch["hand_box"], batch["object_box"])
        loss, terms = self.loss_fn(out, batch, as_tensors=True)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        clip = self.config.optim.clip_grad_norm
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), math.inf if clip is None else clip)
        flags = agree_on_all_ranks(norm, not self._stop_asked(), self.dist.enabled)
        values = torch.stack([loss.detach().float(), *flags, *terms.values()]).tolist()
        loss_value, applied = values[0], values[1] == 1.0
        if values[2] == 0.0:
            self._stop_agreed = True
        terms_values = values[3:]
        if not applied:
            self.last_skip = self._describe_skip(values[0], dict(zip(terms, terms_values, strict=True)))
            with torch.no_grad():
                for buffer, value in zip(buffers, saved):
                    buffer.copy_(value)
        if self.amp:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        elif applied:
            self.optimizer.step()
        if applied and self.ema is not None:
            self.ema.update(self.net)
        if self.config.optim.schedule == "cosine":
            # per optimizer step (skipped ones included): LambdaLR recomputes every LR from its base, which
            # also ends this step's warm-up scaling
            self.scheduler.step()
            scheduled = []
        for group, lr in zip(self.optimizer.param_groups, scheduled, strict=False):
            group["lr"] = lr  # the schedule only ever sees its own values
        return loss_value, dict(zip(terms, terms_values, strict=True)), applied

    def _apply_warmup(self) -> list[float]:
        """During the first ``optim.warmup_steps`` steps, scale the LR of this step by (step + 1) / warmup (it
        depends only on the step count, so a resumed run continues the same ramp); returns the schedule's
        LRs to put back after the step (empty when there is no warm-up)."""
        warmup = self.config.optim.warmup_steps
        if warmup <= 0 or self.state.global_step >= warmup:
            return []
        scheduled = [group["lr"] for group in self.optimizer.param_groups]
        factor = (self.state.global_step + 1) / warmup
        for group, lr in zip(self.optimizer.param_groups, scheduled, strict=True):
            group["lr"] = lr * factor
        return scheduled

    def _describe_skip(self, loss: float, terms: dict[str, float]) -> str:
        """Why a step was skipped: its non-finite loss terms, else the first parameters with bad gradients."""
        bad_terms = [k for k, v in terms.items() if not math.isfinite(v)]
        if bad_terms or not math.isfinite(loss):
            return f"non-finite loss terms: {', '.join(bad_terms) or 'total'}"
        bad = [name for name, p in self.net.named_parameters()
               if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
        if self.amp and not bad:
            return "AMP loss-scale overflow"
        return f"finite loss {loss:.5g}, non-finite gradients in {len(bad)} tensors: {', '.join(bad[:4])}"

    def _end_epoch(self) -> None:
        if self.config.optim.schedule == "step":
            scheduler_epoch_end(self.scheduler, self.state.epoch, self.config.optim.scheduler_stop_epoch)
        self.state.epoch += 1
        self.state.batch_in_epoch = 0

    def request_stop(self) -> None:
        """Ask :meth:`train` to stop after the step in progress (safe from another thread or a signal
        handler); it then writes ``checkpoint_last.pt`` and returns as it does at the end of a run. Under DDP
        all ranks stop after the same step: the first whose step sees a request on any rank."""
        self._stop.set()

    @property
    def stopped_early(self) -> bool:
        """Whether the last :meth:`train` ended on a stop request."""
        return self._stop_agreed

    def _stop_asked(self) -> bool:
        return self._stop.is_set() or self._stop_when()

    def _stopping(self) -> bool:
        if self.dist.enabled:  # only the agreed decision: a rank must not leave the loop alone
            return self._stop_agreed
        self._stop_agreed = self._stop_agreed or self._stop_asked()
        return self._stop_agreed

    def close(self) -> None:
        """Leave the process group this trainer joined (torchrun runs)."""
        import torch.distributed as dist

        if self.dist.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def train(self, max_steps: int | None = None,
              stop_when: Callable[[], bool] | None = None) -> TrainResult:
        """Train until the configured epochs are done or ``max_steps`` optimizer steps are reached (counted
        from the start, steps before a resume included); returns the history and the checkpoint.

        ``stop_when`` is asked before each step; once it says True (or :meth:`request_stop` was called) the
        run stops after that step as at its end (:attr:`stopped_early`).
        """
        self._stop_when = stop_when or (lambda: False)
        self._stop_agreed = False
        run = self.config.run
        max_steps = run.max_steps if max_steps is None else max_steps
        main = self.dist.is_main
        logger = RunLogger(self.out_dir, enabled=main)
        history: list[dict[str, float]] = []
        checkpoint: Path | None = None
        sums: dict[str, float] = defaultdict(float)
        count, data_time, step_time, loss = 0, 0.0, 0.0, 0.0
        skipped, skipped_in_a_row = 0, 0
        last_save = time.monotonic()

        def done() -> bool:
            return (max_steps is not None and self.state.global_step >= max_steps) or (
                self.state.epoch >= self.config.optim.epochs
            ) or self._stopping()

        self.model.train()
        try:
            while not done():
                self.sampler.set_epoch(self.state.epoch, skip=self.state.batch_in_epoch * self.batch_per_rank)
                progress = _progress(
                    total=self.steps_per_epoch, initial=self.state.batch_in_epoch,
                    desc=f"epoch {self.state.epoch + 1}/{self.config.optim.epochs}",
                    enabled=main and run.progress,
                )
                tick = time.perf_counter()
                for batch in self._loader():
                    loaded = time.perf_counter()
                    loss, terms, applied = self.train_step(batch)
                    finished = time.perf_counter()
                    data_time += loaded - tick
                    step_time += finished - tick
                    tick = finished
                    self.state.global_step += 1
                    self.state.batch_in_epoch += 1
                    lr = self.optimizer.param_groups[0]["lr"]
                    entry = {"step": self.state.global_step, "epoch": self.state.epoch, "loss": loss,
                             "lr": lr, **terms}
                    history.append(entry)
                    skipped_in_a_row = 0 if applied else skipped_in_a_row + 1
                    # AMP's scaler skips steps by design while it lowers the loss scale from 2^16
                    if skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW * (AMP_SKIP_FACTOR if self.amp else 1):
                        raise InputError(
                            f"the gradients were not finite for {skipped_in_a_row} steps in a row (last at "
                            f"step {self.state.global_step}, loss {loss}: {self.last_skip}); stopping"
                        )
                    if applied:
                        for key in ("loss", *terms):
                            sums[key] += entry[key]
                        count += 1
                    else:
                        skipped += 1
                    progress.update(1)
                    progress.set_postfix(loss=f"{loss:.4g}")
                    if main and self.state.global_step % max(1, run.log_every) == 0:
                        samples = (count + skipped) * self.batch_per_rank * self.dist.world_size
                        logger.log(self.state.global_step, {
                            **{f"loss/{k}": v / max(count, 1) for k, v in sums.items()},
                            "lr": lr, "epoch": self.state.epoch,
                            "speed/samples_per_s": samples / max(step_time, 1e-9),
                            "speed/data_share": data_time / max(step_time, 1e-9),
                            "skipped_steps": skipped,
                        })
                        sums.clear()
                        count, data_time, step_time, skipped = 0, 0.0, 0.0, 0
                    if self.state.batch_in_epoch >= self.steps_per_epoch:
                        self._end_epoch()
                        if main and (self.state.epoch % max(1, run.checkpoint_every_epochs) == 0):
                            self.save(self.out_dir / f"checkpoint_epoch{self.state.epoch:03d}.pt")
                            checkpoint = self.save(self.out_dir / LAST_CHECKPOINT)
                    if main and run.checkpoint_every_steps and (
                        self.state.global_step % run.checkpoint_every_steps == 0
                    ):
                        self.save(self.out_dir / f"checkpoint_step{self.state.global_step:07d}.pt")
                    if main and run.checkpoint_every_minutes and (
                        time.monotonic() - last_save >= 60.0 * run.checkpoint_every_minutes
                    ):
                        checkpoint = self.save(self.out_dir / LAST_CHECKPOINT)
                        last_save = time.monotonic()
                    if done():
                        break
                progress.close()
            if main and (checkpoint is None or self.state.batch_in_epoch
                         or self.state.epoch % max(1, run.checkpoint_every_epochs)):
                checkpoint = self.save(self.out_dir / LAST_CHECKPOINT)
        finally:
            logger.close()
        return TrainResult(self.state, checkpoint, history)


def _ignore_interrupts(_worker_id: int) -> None:
    """Loader workers leave Ctrl-C (sent to the whole process group) to the training process, which decides
    how to stop; they end when their loader is shut down."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _NullProgress:
    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return _NullProgress()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=False)


def config_of_checkpoint(path: str | Path) -> TrainConfig:
    """The TrainConfig stored in one of our training checkpoints."""
    obj = read_checkpoint_file(path)
    if not isinstance(obj, dict) or not isinstance(obj.get("config"), dict):
        raise CheckpointError(f"{path} carries no training config")
    return config_from_dict(obj["config"])

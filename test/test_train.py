"""Training: a CPU smoke run on a tiny HO3D-layout dataset, exact resume, the recipe configs, and a
world-size-1 DDP run through the CLI (gloo)."""

from __future__ import annotations

import csv
import itertools
import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_data_ho3d import write_standin_mano, write_tiny_ho3d

from hfl_ros.cli import main
from hfl_ros.errors import CheckpointError, InputError
from hfl_ros.model.checkpoint import load_network, read_checkpoint_file, save_checkpoint
from hfl_ros.model.hflnet import hflnet_resnet18
from hfl_ros.model.mano import ManoLayer
from hfl_ros.train.config import config_from_dict, load_config
from hfl_ros.train.trainer import Trainer, scheduler_epoch_end

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    mano_dir = write_standin_mano(base / "mano")
    layer = ManoLayer(mano_dir, side="right", center_idx=0).eval()
    write_tiny_ho3d(base / "ho3d", n_train=8, n_eval=0, mano_layer=layer)
    return base / "ho3d", mano_dir


def smoke_config(data, out_dir: Path, **run) -> dict:
    """The smallest network (ResNet-18 trunk, 64 px), batch 2, no augmentation, the paper's loss weights.

    The vote term (weight 500) dominates the start and learns its cell-position-dependent offsets slowly, so
    halving the total takes about 60 steps rather than 30 here.
    """
    root, mano_dir = data
    return {
        "model": {"trunk": "resnet18", "input_size": 64, "imagenet_weights": False,
                  "mano_dir": str(mano_dir)},
        "data": {"kind": "ho3d", "root": str(root), "workers": 0},
        "augment": {"enabled": False},
        "optim": {"lr": 1e-3},
        "run": {"batch_size": 2, "device": "cpu", "out_dir": str(out_dir), "progress": False, "log_every": 10,
                **run},
    }


@pytest.mark.slow
def test_smoke_run_learns_and_resumes_identically(data, tmp_path):
    torch.set_num_threads(1)
    steps, resume_at = 62, 59  # 4 steps an epoch: the resumed run starts mid-epoch and crosses an epoch end
    cfg = config_from_dict(smoke_config(data, tmp_path / "run", max_steps=steps,
                                        checkpoint_every_steps=resume_at))
    result = Trainer(cfg).train()
    losses = [h["loss"] for h in result.history]
    assert len(losses) == steps and all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-4:]) <= 0.5 * np.mean(losses[:2]), losses
    votes = [h["obj_vote"] for h in result.history]
    assert np.mean(votes[-4:]) < np.mean(votes[:2])  # the object head learns too
    assert result.state.global_step == steps and result.state.epoch == 15 and result.state.batch_in_epoch == 2

    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40, 50, 60] and "loss/obj_vote" in rows[0]

    # Resume from the mid-run checkpoint in another directory and finish: the same steps, the same state.
    cfg2 = config_from_dict(smoke_config(data, tmp_path / "resumed", max_steps=steps))
    resumed = Trainer(cfg2, resume=tmp_path / "run" / f"checkpoint_step{resume_at:07d}.pt").train()
    assert [h["step"] for h in resumed.history] == [60, 61, 62]
    np.testing.assert_allclose([h["loss"] for h in resumed.history], losses[resume_at:], rtol=0, atol=1e-6)
    a = read_checkpoint_file(result.checkpoint)
    b = read_checkpoint_file(resumed.checkpoint)
    assert a["train_state"] == b["train_state"] == {"epoch": 15, "batch_in_epoch": 2, "global_step": 62}
    assert a["scheduler"] == b["scheduler"]
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)
    for index, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            torch.testing.assert_close(b["optimizer"]["state"][index][name], value, rtol=0, atol=1e-6)
    # The checkpoint carries its config and builds the right network for evaluation.
    assert a["config"]["model"]["trunk"] == "resnet18"
    net, _ = load_network(result.checkpoint)
    assert net.config == {"variant": "harmonious", "trunk": "resnet18", "heads": 4, "input_size": 64,
                          "roi_res": 32, "feature_channels": 256}


def test_gradient_norm_cap_limits_the_step(data, tmp_path):
    """With a vanishing cap Adam's step shrinks to ~lr * g / eps; without one it is about lr per weight."""
    torch.set_num_threads(1)

    def largest_change(clip):
        cfg = smoke_config(data, tmp_path / f"clip{clip}", max_steps=1)
        cfg["optim"] = {"lr": 1e-3, "weight_decay": 0.0, "clip_grad_norm": clip}  # decay would bypass the cap
        torch.manual_seed(0)
        trainer = Trainer(config_from_dict(cfg))
        before = {k: v.detach().clone() for k, v in trainer.net.named_parameters()}
        assert trainer.train_step(next(iter(trainer._loader())))[2]
        return max(float((v.detach() - before[k]).abs().max()) for k, v in trainer.net.named_parameters())

    assert largest_change(None) > 5e-4
    assert largest_change(1e-12) < 1e-5
    with pytest.raises(InputError, match="clip_grad_norm"):
        load_config(None, ["optim.clip_grad_norm=0"])


def test_non_finite_steps_are_skipped_and_a_run_of_them_stops_training(data, tmp_path):
    """A batch whose loss is NaN leaves weights and Adam state untouched; ten in a row end the run."""
    from hfl_ros.train.trainer import MAX_SKIPPED_IN_A_ROW

    torch.set_num_threads(1)
    trainer = Trainer(config_from_dict(smoke_config(data, tmp_path / "nan", max_steps=40)))
    batch = next(iter(trainer._loader()))
    poisoned = {**batch, "image": batch["image"].clone()}
    poisoned["image"][0, 0, 10, 10] = float("nan")
    before = {k: v.detach().clone() for k, v in trainer.net.state_dict().items()}
    loss, _, applied = trainer.train_step(poisoned)
    assert not applied and not math.isfinite(loss)
    assert not trainer.optimizer.state  # Adam never stepped
    for key, value in trainer.net.state_dict().items():  # weights and BatchNorm statistics
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)
    loss, _, applied = trainer.train_step(batch)
    assert applied and math.isfinite(loss)
    assert all(torch.isfinite(v).all() for v in trainer.net.parameters())

    class Poisoned(torch.utils.data.Dataset):
        def __init__(self, inner):
            self.inner = inner

        def __len__(self):
            return len(self.inner)

        def __getitem__(self, key):
            item = self.inner[key]
            item["image"] = item["image"] * float("nan")
            return item

    trainer.dataset = Poisoned(trainer.dataset)
    trainer._data_loader = None  # the loader is made once per trainer; make it again over the poisoned data
    with pytest.raises(InputError, match=f"not finite for {MAX_SKIPPED_IN_A_ROW} steps in a row"):
        trainer.train()
    assert trainer.state.global_step == MAX_SKIPPED_IN_A_ROW
    assert all(torch.isfinite(v).all() for v in trainer.net.state_dict().values() if v.is_floating_point())


def test_recipe_configs_match_the_paper():
    ho3d = load_config(REPO / "config" / "train_ho3d.yaml")
    dex = load_config(REPO / "config" / "train_dexycb.yaml")
    for cfg in (ho3d, dex):
        assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.lr_gamma) == (1e-4, 5e-4, 0.7)
        assert (cfg.run.batch_size, cfg.run.seed) == (64, 0)
        assert (cfg.model.variant, cfg.model.trunk, cfg.model.heads, cfg.model.input_size) == (
            "harmonious", "resnet50", 4, 256)
        assert cfg.loss.as_dict() == {"joints2d": 100.0, "mano_verts": 1e4, "mano_joints": 1e4,
                                      "mano_rotmat": 10.0, "mano_shape": 0.1, "obj_vote": 500.0,
                                      "obj_conf": 100.0}
    assert (ho3d.optim.lr_step, ho3d.optim.epochs, ho3d.augment.rotation) == (10, 70, "uniform")
    assert (dex.optim.lr_step, dex.optim.epochs, dex.optim.scheduler_stop_epoch) == (5, 40, 35)
    assert dex.augment.rotation == "gaussian" and dex.data.kind == "dexycb"
    # The lr of the last epoch: HO3D decays after epochs 10, 20, ..., 60; DexYCB after 5, ..., 35, then stops.
    for cfg, decays in ((ho3d, 6), (dex, 7)):
        opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=cfg.optim.lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, cfg.optim.lr_step, cfg.optim.lr_gamma)
        lrs = []
        for epoch in range(cfg.optim.epochs):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            scheduler_epoch_end(sched, epoch, cfg.optim.scheduler_stop_epoch)
        assert lrs[-1] == pytest.approx(1e-4 * 0.7**decays)
    assert lrs[-1] == pytest.approx(8.2e-6, rel=0.01)  # DexYCB's final learning rate (spec §7)
    with pytest.raises(InputError, match=r"unknown config key.*lr_decay"):
        config_from_dict({"optim": {"lr_decay": 0.5}})


def test_training_input_errors(data, tmp_path):
    cfg = smoke_config(data, tmp_path)
    cfg["model"]["mano_dir"] = None
    with pytest.raises(InputError, match="mano_dir"):
        Trainer(config_from_dict(cfg))
    cfg = smoke_config(data, tmp_path)
    cfg["run"]["batch_size"] = 16
    with pytest.raises(InputError, match="fewer than one batch"):
        Trainer(config_from_dict(cfg))
    net = hflnet_resnet18(mano_path=data[1], input_size=64)
    weights_only = save_checkpoint(tmp_path / "weights.pt", net, {})
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        Trainer(config_from_dict(smoke_config(data, tmp_path)), resume=weights_only)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_cli_under_torchrun_environment_with_one_rank(data, tmp_path, monkeypatch):
    """What torchrun sets up, with world size 1 (gloo): the DDP path, rank-0 checkpoint, clean exit."""
    torch.set_num_threads(1)
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(key, value)
    config = tmp_path / "smoke.yaml"
    config.write_text(yaml.safe_dump(smoke_config(data, tmp_path / "ignored")))
    out = tmp_path / "ddp"
    args = ["train", "--config", str(config), "--max-steps", "1", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    assert not torch.distributed.is_initialized()
    ckpt = read_checkpoint_file(out / "checkpoint_last.pt")
    assert ckpt["train_state"]["global_step"] == 1 and ckpt["config"]["run"]["out_dir"] == str(out)
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])  # the unwrapped network is saved


def test_timeboxed_training_fits_its_budget_and_returns_weights_in_parts(data, tmp_path):
    """scripts/train_timeboxed.py: epochs sized from the measured step rate, stopped by the budget at the
    latest, weights written in parts that rejoin into a checkpoint load_network reads."""
    import json
    import subprocess
    import sys
    import time

    config = smoke_config(data, tmp_path / "run", checkpoint_every_epochs=1000)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    started = time.monotonic()
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train_timeboxed.py"),
         "--config", str(tmp_path / "config.yaml"), "--budget-s", "30", "--reserve-s", "12",
         "--probe-steps", "4", "--part-mib", "16", "--out", str(out), "--val-split", "train",
         "--val-every", "3"],
        check=True, cwd=REPO, timeout=120,
    )
    elapsed = time.monotonic() - started
    summary = json.loads((out / "timeboxed.json").read_text())
    assert summary["epochs"] >= 1 and summary["lr_step"] == max(1, round(summary["epochs"] * 0.8))
    # Training stops at budget - reserve; the reserve (validation, the weights) is an estimate, so allow slack
    # for a loaded machine.
    assert summary["steps"] >= 1 and summary["total_seconds"] < 30 + 30 and elapsed < 120
    scores = summary["validation"]  # scored before training and every 3 steps; the best weights come back
    steps = [v["step"] for v in scores]
    assert steps == sorted(steps) and all(0 <= b - a <= 3 for a, b in itertools.pairwise(steps))
    assert all(math.isfinite(v["loss"]) for v in scores)
    best = min(scores, key=lambda v: v["loss"])
    assert summary["returned_step"] == best["step"]
    if not summary["stopped_by_watchdog"]:  # a fast machine finishes the epochs it sized
        assert summary["epochs_done"] == summary["epochs"]
    parts = sorted(out.glob("weights_fp32.pt.part*"))
    assert [p.name for p in parts] == summary["weights_parts"] and len(parts) >= 2
    assert all(p.stat().st_size <= 16 * 2**20 for p in parts)
    joined = tmp_path / "weights.pt"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    net, meta = load_network(joined)
    assert net.config["trunk"] == "resnet18"
    assert meta["train_state"]["global_step"] == summary["steps"]  # the run's state, the best step's weights
    assert (out / "log.csv").is_file() == (summary["steps"] >= config["run"]["log_every"])


def test_warmup_ramps_the_step_size_and_leaves_the_schedule_alone(data, tmp_path):
    config = smoke_config(data, tmp_path / "warm", max_steps=6)
    config["optim"].update(warmup_steps=4, lr=1e-3, lr_step=1, lr_gamma=0.5)  # 4 steps an epoch
    trainer = Trainer(config_from_dict(config))
    seen: list[float] = []
    step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        seen.append(trainer.optimizer.param_groups[0]["lr"])
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step
    trainer.train()
    # steps 1-4 ramp up to the scheduled 1e-3; the epoch end halves the schedule for steps 5-6
    np.testing.assert_allclose(seen, [0.25e-3, 0.5e-3, 0.75e-3, 1e-3, 0.5e-3, 0.5e-3], rtol=1e-9)
    assert trainer.scheduler.get_last_lr() == [0.5e-3]
    with pytest.raises(InputError, match="warmup_steps"):
        load_config(None, ["optim.warmup_steps=-1"])

"""The trainer's options outside the paper: the cosine schedule, a lower trunk LR, the weight average (EMA),
fused Adam and time-based checkpoints, with exact resume and the export of the average."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from test_train import data, smoke_config  # noqa: F401  (the module-scoped tiny dataset fixture)

from hfl_ros.demo.export_model import export_demo_model
from hfl_ros.errors import InputError
from hfl_ros.model.checkpoint import load_network, read_checkpoint_file
from hfl_ros.train.config import config_from_dict, load_config
from hfl_ros.train.schedule import cosine_factor, parameter_groups, trunk_parameter_names
from hfl_ros.train.trainer import Trainer
from hfl_ros.train.weight_average import WeightAverage, averaged_keys


def cosine_config(data, out_dir, **optim):  # noqa: F811
    config = smoke_config(data, out_dir, max_steps=None)
    # 4 steps an epoch
    config["optim"].update(schedule="cosine", lr=1e-3, epochs=2, min_lr_factor=0.1, **optim)
    return config


def recorded_lrs(trainer: Trainer) -> list[list[float]]:
    seen: list[list[float]] = []
    step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        seen.append([group["lr"] for group in trainer.optimizer.param_groups])
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step
    return seen


def test_cosine_factor_runs_from_one_to_the_floor():
    f = cosine_factor(100, 0.02)
    assert f(0) == 1.0 and f(100) == pytest.approx(0.02) and f(250) == pytest.approx(0.02)
    assert f(50) == pytest.approx(0.51)
    values = [f(s) for s in range(101)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_cosine_schedule_with_warmup_and_a_lower_trunk_lr(data, tmp_path):  # noqa: F811
    config = cosine_config(data, tmp_path / "cos", warmup_steps=2, trunk_lr_factor=0.25)
    trainer = Trainer(config_from_dict(config))
    names = [group["name"] for group in trainer.optimizer.param_groups]
    assert names == ["heads", "trunk"]
    trunk_ids = {id(p) for p in trainer.optimizer.param_groups[1]["params"]}
    named = dict(trainer.net.named_parameters())
    assert trunk_ids == {id(named[n]) for n in trunk_parameter_names(trainer.net) if named[n].requires_grad}
    seen = recorded_lrs(trainer)
    trainer.train()
    f = cosine_factor(8, 0.1)
    expected_heads = [1e-3 * f(s) * min(1.0, (s + 1) / 2) for s in range(8)]
    np.testing.assert_allclose([lr[0] for lr in seen], expected_heads, rtol=1e-9)
    np.testing.assert_allclose([lr[1] for lr in seen], [0.25 * x for x in expected_heads], rtol=1e-9)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)  # the floor at the run's end


def test_one_group_when_the_trunk_lr_is_the_same(data, tmp_path):  # noqa: F811
    trainer = Trainer(config_from_dict(smoke_config(data, tmp_path / "one", max_steps=1)))
    assert len(trainer.optimizer.param_groups) == 1
    groups = parameter_groups(trainer.net, 1e-3, 0.5)
    assert [g["lr"] for g in groups] == [1e-3, 5e-4]
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in trainer.net.parameters())


def test_weight_average_follows_the_weights_with_its_decay(data, tmp_path):  # noqa: F811
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = WeightAverage(net, decay=0.5)
    assert averaged_keys(net) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                  "1.running_var"]
    start = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    ema.update(net)  # decay min(0.5, 2/11)
    torch.testing.assert_close(ema.averages["0.weight"], start + 9 / 11)
    state = ema.state_dict(net)
    assert state["1.num_batches_tracked"].data_ptr() == net[1].num_batches_tracked.data_ptr()
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(net, decay=1.0)


@pytest.mark.slow
def test_ema_and_fused_adam_resume_exactly_and_export_the_average(data, tmp_path):  # noqa: F811
    torch.set_num_threads(1)
    config = cosine_config(data, tmp_path / "run", ema_decay=0.9, fused=True, trunk_lr_factor=0.5)
    config["run"]["checkpoint_every_steps"] = 5
    result = Trainer(config_from_dict(config)).train()
    assert result.state.global_step == 8 and all(math.isfinite(h["loss"]) for h in result.history)

    config["run"]["out_dir"] = str(tmp_path / "resumed")
    resumed = Trainer(config_from_dict(config), resume=tmp_path / "run" / "checkpoint_step0000005.pt").train()
    np.testing.assert_allclose([h["loss"] for h in resumed.history], [h["loss"] for h in result.history[5:]],
                               rtol=0, atol=1e-6)
    a, b = read_checkpoint_file(result.checkpoint), read_checkpoint_file(resumed.checkpoint)
    assert a["ema"]["updates"] == b["ema"]["updates"] == 8
    for key, value in a["ema"]["state"].items():
        torch.testing.assert_close(b["ema"]["state"][key], value, rtol=0, atol=1e-6, msg=key)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 8

    # The export carries the average, not the last weights; --last gives the last ones.
    averaged = export_demo_model(result.checkpoint, tmp_path / "avg.pt")
    last = export_demo_model(result.checkpoint, tmp_path / "last.pt", average=False)
    net_avg, meta = load_network(averaged)
    net_last, _ = load_network(last)
    assert meta["weights"] == "moving average"
    key = next(iter(a["ema"]["state"]))
    torch.testing.assert_close(net_avg.state_dict()[key].float(), a["ema"]["state"][key].half().float())
    torch.testing.assert_close(net_last.state_dict()[key].float(), a["state_dict"][key].half().float())
    assert not torch.equal(a["ema"]["state"][key], a["state_dict"][key])


def test_fused_adam_takes_the_same_step(data, tmp_path):  # noqa: F811
    """One step agrees to float32 rounding (1e-7); later steps of this loud smoke run amplify rounding."""
    torch.set_num_threads(1)
    states = []
    for fused in (False, True):
        config = smoke_config(data, tmp_path / f"fused{fused}", max_steps=1)
        config["optim"]["fused"] = fused
        trainer = Trainer(config_from_dict(config))
        trainer.train()
        states.append(trainer.net.state_dict())
    for key, value in states[0].items():
        torch.testing.assert_close(states[1][key], value, rtol=0, atol=1e-6, msg=key)


@pytest.mark.parametrize("override, message", [
    ("optim.schedule=linear", "optim.schedule"),
    ("optim.min_lr_factor=1.5", "min_lr_factor"),
    ("optim.trunk_lr_factor=0", "trunk_lr_factor"),
    ("optim.ema_decay=1.0", "ema_decay"),
    ("run.checkpoint_every_minutes=-1", "checkpoint_every_minutes"),
])
def test_bad_schedule_options_are_named(override, message):
    with pytest.raises(InputError, match=message):
        load_config(None, [override])

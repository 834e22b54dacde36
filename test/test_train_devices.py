"""Training's device handling without a GPU: device names, the CUDA random state on fewer GPUs, the DDP skip
decision agreed over ranks (gloo), and the backend settings."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.multiprocessing as mp

from hfl_ros import devices
from hfl_ros.devices import DeviceError, resolve_device
from hfl_ros.train import trainer
from hfl_ros.train.trainer import (
    DistributedContext,
    agree_on_all_ranks,
    configure_backends,
    set_rng_state,
    training_device,
)


@pytest.fixture
def two_gpus(monkeypatch):
    """torch.cuda as a host with two usable GPUs (nothing is run on them)."""
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "init", lambda: None)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    made_current = []
    monkeypatch.setattr(torch.cuda, "set_device", made_current.append)
    return made_current


def test_a_bare_cuda_gets_an_index_that_set_device_accepts(two_gpus):
    assert resolve_device("cuda").device == torch.device("cuda", 0)
    assert resolve_device("cuda", local_rank=1).device == torch.device("cuda", 1)
    assert resolve_device("auto").device == torch.device("cuda", 0)
    device = training_device("cuda", DistributedContext(True, rank=1, world_size=2, local_rank=1))
    assert device == torch.device("cuda", 1) and two_gpus == [torch.device("cuda", 1)]
    with pytest.raises(DeviceError, match=r"'cuda:7': there is no GPU 7 .*cuda:0\.\.cuda:1"):
        resolve_device("cuda:7")


@pytest.mark.parametrize("name, message", [
    ("gpu", "'gpu' is not a device"),
    ("cpu:1", "the CPU takes no index"),
    ("auto:0", "auto takes no index"),
])
def test_names_that_are_not_devices_are_refused(name, message):
    with pytest.raises(DeviceError, match=message):
        resolve_device(name)


def test_unusable_cuda_is_an_error_and_auto_falls_back_with_the_reason(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(DeviceError, match="has no CUDA support"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def no_driver():
        raise RuntimeError("Found no NVIDIA driver on your system.\nPlease check ...")

    monkeypatch.setattr(torch.cuda, "init", no_driver)
    with pytest.raises(DeviceError, match="CUDA cannot start: Found no NVIDIA driver on your system"):
        resolve_device("cuda:0")
    resolved = resolve_device("auto")
    assert resolved.device == torch.device("cpu") and "no NVIDIA driver" in resolved.fallback_reason
    with pytest.warns(UserWarning, match="training on the CPU: CUDA cannot start"):
        assert training_device("auto", DistributedContext()) == torch.device("cpu")
    assert devices.cuda_unusable_reason().startswith("CUDA cannot start")


def test_cuda_random_state_resumes_on_fewer_gpus(monkeypatch):
    base = trainer.rng_state()
    assert "cuda" not in base  # no GPU in use: nothing to save
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_rng_state", restored.append)
    states = [torch.full((8,), i, dtype=torch.uint8) for i in range(4)]

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    set_rng_state({**base, "cuda": states})  # an older checkpoint: one state per GPU of a 4-GPU run
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 6)
    set_rng_state({**base, "cuda": states[:2]})  # more GPUs now than the checkpoint knew: the last one's
    set_rng_state({**base, "cuda": states[3]})  # the current format: this process's GPU only
    assert [int(s[0]) for s in restored] == [1, 1, 3]

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda: states[2])
    assert torch.equal(trainer.rng_state()["cuda"], states[2])


def _agree(rank: int, init_file: str, norms: list[float], go_on: list[bool], out: dict) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=len(norms))
    try:
        out[rank] = agree_on_all_ranks(torch.tensor(norms[rank]), go_on[rank], distributed=True).tolist()
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("norms, go_on, expected", [
    ([1.0, math.inf], [True, True], [0.0, 1.0]),
    ([math.nan, 2.0], [True, True], [0.0, 1.0]),
    ([1.0, 2.0], [True, True], [1.0, 1.0]),
    ([1.0, 2.0], [True, False], [1.0, 0.0]),  # one rank was asked to stop: every rank stops after this step
])
def test_ranks_agree_to_skip_a_step_and_to_stop(tmp_path, norms, go_on, expected):
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_agree, args=(str(tmp_path / "rendezvous"), norms, go_on, out), nprocs=len(norms), join=True)
        assert dict(out) == dict.fromkeys(range(len(norms)), expected)
    assert agree_on_all_ranks(torch.tensor(math.inf), True, distributed=False).tolist() == [0.0, 1.0]


def test_backend_settings_for_cuda_training(monkeypatch):
    """The flags are plain settings, so the CUDA branch can be checked without a GPU."""
    flags = (torch.backends.cudnn, "benchmark"), (torch.backends.cudnn, "deterministic"), \
        (torch.backends.cudnn, "allow_tf32"), (torch.backends.cuda.matmul, "allow_tf32")
    saved = [getattr(obj, name) for obj, name in flags], torch.are_deterministic_algorithms_enabled()
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cuda = torch.device("cuda", 0)
    try:
        configure_backends(cuda, deterministic=True, tf32=True)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled
        assert torch.are_deterministic_algorithms_enabled() and warn_only()
        assert [getattr(obj, name) for obj, name in flags] == [False, True, False, False]
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        configure_backends(cuda, deterministic=False, tf32=False)
        assert [getattr(obj, name) for obj, name in flags] == [True, False, False, False]
        configure_backends(cuda, deterministic=False, tf32=True)
        assert [getattr(obj, name) for obj, name in flags] == [True, False, True, True]
        configure_backends(torch.device("cpu"), deterministic=True)
        assert torch.are_deterministic_algorithms_enabled() and not warn_only()
    finally:
        for (obj, name), value in zip(flags, saved[0]):
            setattr(obj, name, value)
        torch.use_deterministic_algorithms(saved[1])

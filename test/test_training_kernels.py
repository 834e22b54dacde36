"""The CPU training kernels (RoIAlign as two matrix products, the smoothing conv on the whole map, stage 4
channels-last) give the numbers of the inference path's kernels (torchvision RoIAlign, the windowed smoothing,
NCHW stage 4): outputs and gradients, on the demo architecture and on the paper's."""

from __future__ import annotations

import pytest
import torch

from hfl_ros.data.standin_hand import write_standin_hand_model
from hfl_ros.model import HFLNet
from hfl_ros.model.roi import roi_features, roi_features_separable


@pytest.fixture(scope="module")
def hand_model(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("hand") / "STANDIN_HAND_RIGHT.pkl"
    write_standin_hand_model(path, "right", 0)
    return str(path)


def _boxes(gen: torch.Generator, batch: int, dtype: torch.dtype, span: float) -> torch.Tensor:
    centre = torch.rand(batch, 2, generator=gen, dtype=dtype) * (span + 12) - 6
    size = torch.rand(batch, 2, generator=gen, dtype=dtype) * 0.9 * span + 0.5
    return torch.cat((centre - size / 2, centre + size / 2), dim=1)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
@pytest.mark.parametrize("res", [16, 32])
def test_separable_roi_align_equals_torchvision(dtype, tol, res):
    """Forward and input gradient, with boxes inside, across and beyond the map's edges, tiny and huge."""
    gen = torch.Generator().manual_seed(res)
    batch, size = 6, 24
    feature = torch.randn(batch, 8, size, size, generator=gen, dtype=dtype)
    boxes = [_boxes(gen, batch, dtype, 4 * size) for _ in range(3)]
    boxes[0][0] = torch.tensor([10.0, 10.0, 10.5, 10.2])  # under one cell: RoIAlign widens it to one cell
    boxes[1][1] = torch.tensor([-30.0, -40.0, 4 * size + 20.0, 4 * size + 35.0])  # beyond every edge
    boxes[2][2] = torch.tensor([4 * size - 2.0, 4 * size - 2.0, 4 * size + 30.0, 4 * size + 30.0])  # corner
    grads = [torch.randn(batch, 8, res, res, generator=gen, dtype=dtype) for _ in boxes]
    results = []
    for align in (roi_features, roi_features_separable):
        x = feature.clone().requires_grad_()
        out = align(x, boxes, res)
        sum((o * g).sum() for o, g in zip(out, grads, strict=True)).backward()
        results.append((out, x.grad))
    (ref, ref_grad), (sep, sep_grad) = results
    for a, b in zip(ref, sep, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=tol * max(1.0, a.abs().max().item()))
    torch.testing.assert_close(sep_grad, ref_grad, rtol=0, atol=tol * 10 * ref_grad.abs().max().item())


def _train_step(net: HFLNet, fast: bool, images, hand, obj) -> tuple[dict, dict]:
    net.cpu_training_kernels = fast
    net.base_net.channels_last_training = fast
    net.zero_grad(set_to_none=True)
    out = net(images, hand, obj)
    loss = sum((v.float() ** 2).mean() for v in out.values() if torch.is_tensor(v) and v.is_floating_point())
    loss.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    return {k: v.detach().clone() for k, v in out.items() if torch.is_tensor(v)}, grads


@pytest.mark.parametrize("trunk, size, res, channels", [
    ("efficientnet_lite0", 128, 16, 128),  # the demo model
    ("resnet18", 128, 32, 256),  # the paper's heads on a small trunk
])
def test_training_kernels_give_the_inference_kernels_outputs_and_gradients(hand_model, trunk, size, res,
                                                                           channels):
    torch.manual_seed(0)
    net = HFLNet(hand_model, "harmonious", trunk=trunk, input_size=size, roi_res=res,
                 feature_channels=channels, imagenet_weights=False).train().double()
    net.base_net.freeze(2)
    gen = torch.Generator().manual_seed(1)
    batch = 4
    images = torch.rand(batch, 3, size, size, generator=gen, dtype=torch.float64)
    hand = _boxes(gen, batch, torch.float64, size).clamp(0, size)
    obj = _boxes(gen, batch, torch.float64, size).clamp(0, size)
    obj[0] = torch.tensor([size - 20.0, size - 20.0, size - 1.0, size - 1.0])  # likely disjoint from the hand
    bn_state = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    ref_out, ref_grads = _train_step(net, False, images, hand, obj)
    net.load_state_dict(bn_state, strict=False)  # the same BatchNorm statistics before the second pass
    out, grads = _train_step(net, True, images, hand, obj)
    assert set(out) == set(ref_out) and set(grads) == set(ref_grads) and len(grads) > 100
    for key, value in ref_out.items():
        torch.testing.assert_close(out[key], value, rtol=1e-9, atol=1e-9 * max(1.0, value.abs().max().item()),
                                   msg=key)
    # In float64 rounding cannot flip a max-pool or a ReLU: every gradient tensor agrees to its norm's 1e-9,
    # floored at 1e-9 of the largest (biases ahead of a BatchNorm have a zero gradient in exact arithmetic).
    floor = 1e-9 * max(g.norm().item() for g in ref_grads.values())
    errors = {n: ((grads[n] - g).norm() / g.norm().clamp_min(floor)).item() for n, g in ref_grads.items()}
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-7, (worst, errors[worst])

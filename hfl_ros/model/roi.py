"""RoIAlign of the stride-4 maps (spec §3), with the last FPN conv evaluated only where the RoIs read.

The official network smooths the whole 64×64 top-down map p2 with a 3×3 conv and then RoIAligns 32×32
features from a few boxes. ``smoothed_roi_features`` gives the same numbers while applying the conv only to a
window that contains every cell the boxes' sample points read, plus one cell: each window edge is then either
beyond every cell RoIAlign reads (so its border clamping never triggers there) or the map's own edge.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as nnf
from torchvision.ops import roi_align

ROI_RES = 32
FEATURE_STRIDE = 4
_MARGIN = 1  # map cells between the cells a RoI samples and an inner window edge (1 suffices)


def roi_features(
    feature_map: torch.Tensor, boxes: list[torch.Tensor], res: int = ROI_RES
) -> list[torch.Tensor]:
    """RoIAlign (res×res, 32 official; stride 4, adaptive sampling, aligned=False) of several box lists."""
    batch = boxes[0].shape[0]
    # Under autocast torchvision runs RoIAlign in float32 and the boxes must stay float32 (a float16/bfloat16
    # box loses up to a pixel); without it, the boxes take the map's dtype.
    dtype = torch.float32 if torch.is_autocast_enabled(feature_map.device.type) else feature_map.dtype
    index = torch.arange(batch, device=feature_map.device, dtype=dtype).repeat(len(boxes))
    rois = torch.cat((index[:, None], torch.cat(boxes).to(dtype)), dim=1)
    out = roi_align(feature_map, rois, (res, res), spatial_scale=1.0 / FEATURE_STRIDE, sampling_ratio=-1)
    return list(out.split(batch))


def feature_windows(
    boxes: list[torch.Tensor], height: int, width: int
) -> tuple[list[int], list[int], int, int]:
    """Per-sample window origins (ys, xs) and one common window size (h, w) covering every box of the sample.

    A box reads the cells around [x1/4, max(x2/4, x1/4 + 1)] (aligned=False makes a RoI at least one cell
    wide); the window adds the margin and is clipped to the map.
    """
    b = torch.stack(boxes, dim=1).detach().to("cpu", torch.float64)  # (B, n_boxes, 4)
    size = torch.tensor([width, height], dtype=torch.float64)
    lo = b[..., :2] / FEATURE_STRIDE
    hi = torch.maximum(b[..., 2:] / FEATURE_STRIDE, lo + 1.0)
    start = torch.minimum((lo.floor() - _MARGIN).clamp_min(0), size - 1).amin(dim=1)
    end = torch.maximum(torch.minimum(hi.floor() + _MARGIN + 1, size), start[:, None] + 1).amax(dim=1)
    window = (end - start).amax(dim=0)
    start = torch.minimum(start, size - window)
    xs, ys = start.long().T.tolist()
    w, h = window.long().tolist()
    return ys, xs, h, w


def _crop_padded(p2: torch.Tensor, ys: list[int], xs: list[int], h: int, w: int) -> torch.Tensor:
    """Rows ys-1 .. ys+h, columns xs-1 .. xs+w of ``p2`` per sample; zero outside the map (conv padding)."""
    height, width = p2.shape[-2:]
    if len(set(ys)) == 1 and len(set(xs)) == 1:
        y0, x0 = ys[0], xs[0]
        window = p2[:, :, max(y0 - 1, 0) : y0 + h + 1, max(x0 - 1, 0) : x0 + w + 1]
        pad = (int(x0 == 0), int(x0 + w == width), int(y0 == 0), int(y0 + h == height))
        return nnf.pad(window, pad) if any(pad) else window
    padded = nnf.pad(p2, (1, 1, 1, 1))
    device = p2.device
    rows = torch.tensor(ys, device=device)[:, None] + torch.arange(h + 2, device=device)
    cols = torch.tensor(xs, device=device)[:, None] + torch.arange(w + 2, device=device)
    batch = torch.arange(p2.shape[0], device=device)[:, None, None]
    # advanced indexing around the channel slice yields (B, h+2, w+2, C): a channels-last window
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def smoothed_roi_features(
    p2: torch.Tensor,
    smooth: nn.Conv2d,
    boxes: list[torch.Tensor],
    windowed: bool = True,
    res: int = ROI_RES,
    separable: bool = False,
) -> list[torch.Tensor]:
    """RoIAlign of ``smooth(p2)`` (3×3 conv, padding 1) for each (B, 4) box list in crop px.

    With ``windowed`` the conv only runs on the region the boxes read; the result equals the full computation.
    ``separable`` (full map only) uses :func:`roi_features_separable`, the cheaper one to train through on a
    CPU.
    """
    if not windowed:
        align = roi_features_separable if separable else roi_features
        return align(smooth(p2), boxes, res)
    height, width = p2.shape[-2:]
    ys, xs, h, w = feature_windows(boxes, height, width)
    if (h, w) == (height, width):  # the boxes read the whole map
        return smoothed_roi_features(p2, smooth, boxes, False, res)
    # The window carries its border (the neighbouring cells, or zeros at the map's edge): no padding.
    window = nnf.conv2d(_crop_padded(p2, ys, xs, h, w), smooth.weight, smooth.bias)
    shift = torch.tensor([[x, y, x, y] for y, x in zip(ys, xs)], device=p2.device, dtype=boxes[0].dtype)
    return roi_features(window, [b - FEATURE_STRIDE * shift for b in boxes], res)


def _axis_weights(start: torch.Tensor, length: torch.Tensor, res: int, size: int) -> torch.Tensor:
    """(N, res, size): RoIAlign's averaged bilinear weights along one axis (as torchvision, aligned=False:
    adaptive sampling: ceil(length / res) points a bin, a point beyond [-1, size] contributes nothing, one
    below 0 reads cell 0, one beyond size - 1 reads the last cell)."""
    n = start.shape[0]
    grid = torch.ceil(length / res).clamp_min(1)  # (N,) sample points per bin along this axis
    most = int(grid.max())
    bin_size = length / res
    bins = torch.arange(res, dtype=start.dtype, device=start.device)
    points = torch.arange(most, dtype=start.dtype, device=start.device)
    # (N, res, most) sample coordinates; points beyond a RoI's own grid get weight 0
    pos = start[:, None, None] + bins[None, :, None] * bin_size[:, None, None] + (
        points[None, None, :] + 0.5) * (bin_size / grid)[:, None, None]
    used = (points[None, None, :] < grid[:, None, None]) & (pos >= -1.0) & (pos <= size)
    pos = pos.clamp_min(0.0)
    low = pos.floor().clamp_max(size - 1)
    pos = torch.where(low >= size - 1, low, pos)
    frac = pos - low
    high = (low + 1).clamp_max(size - 1)
    share = used.to(start.dtype) / grid[:, None, None]
    weights = torch.zeros(n, res, size, dtype=start.dtype, device=start.device)
    weights.scatter_add_(2, low.long(), (1.0 - frac) * share)
    weights.scatter_add_(2, high.long(), frac * share)
    return weights


def roi_features_separable(
    feature_map: torch.Tensor, boxes: list[torch.Tensor], res: int = ROI_RES
) -> list[torch.Tensor]:
    """:func:`roi_features` as two matrix products per RoI (rows, then columns).

    Bilinear sampling and the bin averages of RoIAlign factor into a (res × H) row matrix and a (res × W)
    column matrix, so out = Wy · F · Wxᵀ. The result equals torchvision's to float rounding (about 1e-7); its
    backward is two matrix products too, much cheaper on a CPU than torchvision's single-threaded scatter.
    Each box list must have one box per sample of ``feature_map``. No gradient flows to the boxes (as in
    torchvision).
    """
    batch, _, height, width = feature_map.shape
    dtype = feature_map.dtype
    coords = torch.float64 if dtype == torch.float64 else torch.float32  # as torchvision: the map's, >= f32
    b = torch.stack([box.detach() for box in boxes]).to(coords) / FEATURE_STRIDE  # (K, B, 4)
    b = b.reshape(-1, 4)
    x1, y1 = b[:, 0], b[:, 1]
    w = (b[:, 2] - x1).clamp_min(1.0)
    h = (b[:, 3] - y1).clamp_min(1.0)
    wy = _axis_weights(y1, h, res, height).to(dtype).view(len(boxes), batch, res, height)
    wx = _axis_weights(x1, w, res, width).to(dtype).view(len(boxes), batch, res, width)
    # rows: (K, B, res, H) x (B, C, H, W) -> (K, B, C, res, W)
    # columns: x (K, B, res, W)ᵀ -> (K, B, C, res, res)
    rows = torch.einsum("kbph,bchw->kbcpw", wy, feature_map)
    out = torch.einsum("kbcpw,kbqw->kbcpq", rows, wx)
    return list(out.unbind(0))

"""The one inference path: RGB frame + camera matrix + 2D detections -> hand-object results.

The live node, the offline labeler and the evaluator all call :class:`Estimator`. Per frame it pairs each
hand with the object box it overlaps most, crops every pair as HFL-Net was trained (left hands mirrored and
processed as right hands), runs all pairs of all frames in batched forwards, un-mirrors the outputs, solves
the object pose by EPnP-RANSAC on the voted control points and fits the hand translation that the network
does not predict.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import (
    BadBoxError,
    BadImageError,
    CheckpointError,
    HandModelError,
    HflRosError,
    InputError,
    TooManyHandsError,
    UnknownObjectClassError,
)
from .estimator_config import RUNTIME_OPTIONS, EstimatorConfig
from .geometry.boxes import intersection_area, iou, scale_box, validate_box
from .geometry.camera import project, validate_K
from .geometry.crop import CropTransform, crop_for_pair, mirror_box, mirror_image, warp_image
from .geometry.hand_translation import fit_hand_translation
from .geometry.object_models import ObjectModel, ObjectModelLibrary
from .geometry.pnp import select_votes, solve_pnp, top_votes
from .geometry.rotations import mirror_mano_pose, mirror_rotation
from .results import Detection, Frame, HandEstimate, HandObjectResult, ObjectEstimate, Side, Status

logger = logging.getLogger(__name__)

class ReducedPrecisionNetworkError(InputError):
    """A network with float16/bfloat16 weights was given; fp16 must come through autocast."""

    reason = "reduced_precision_network"


#: Votes per control point and confidence threshold of the vote selection (spec §6).
VOTES_PER_POINT = 10
VOTE_THRESHOLD = 0.5


def validate_image(image) -> np.ndarray:
    """Check that the image is (H, W, 3) uint8 RGB; BadImageError naming the dtype, shape or channel count."""
    if not isinstance(image, np.ndarray):
        raise BadImageError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise BadImageError(f"image must be uint8 RGB, got dtype {image.dtype}")
    if image.ndim != 3:
        raise BadImageError(f"image must be H x W x 3 RGB, got shape {image.shape} ({image.ndim} dimensions)")
    if image.shape[2] != 3:
        raise BadImageError(f"image must have 3 channels (RGB), got {image.shape[2]} (shape {image.shape})")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise BadImageError(f"image is too small: shape {image.shape}")
    return image


def pair_object(hand_box: np.ndarray, object_boxes: np.ndarray) -> int | None:
    """Index of the object box the hand box overlaps most (highest IoU, ties broken by intersection area),
    or None when it overlaps none. Non-finite object boxes never pair."""
    if len(object_boxes) == 0:
        return None
    finite = np.all(np.isfinite(object_boxes), axis=1)
    boxes = np.where(finite[:, None], object_boxes, 0.0)
    overlap = np.where(finite, iou(hand_box, boxes), -1.0)
    inter = np.where(finite, intersection_area(hand_box, boxes), 0.0)
    best = int(np.lexsort((inter, overlap))[-1])
    return best if inter[best] > 0 else None


def heatmap_peakedness(heatmaps: torch.Tensor) -> torch.Tensor:
    """Hand estimate score in [0, 1]: one minus the mean normalised entropy of the 21 joint heat maps.

    Each heat map is a softmax over the 32 x 32 cells; a uniform map scores 0 and a single-cell peak 1.
    """
    probs = heatmaps.float().flatten(2)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1) / np.log(probs.shape[-1])
    return (1.0 - entropy).mean(-1).clamp(0.0, 1.0)


@dataclass
class _Pair:
    """One hand (and its object) prepared for the network."""

    frame: int
    slot: int
    hand: Detection
    hand_box: np.ndarray  # validated, image px
    K: np.ndarray
    width: int
    mirrored: bool
    crop: CropTransform
    crop_image: np.ndarray  # (S, S, 3) uint8
    net_hand_box: np.ndarray  # crop px
    net_object_box: np.ndarray  # crop px
    obj: Detection | None = None
    model: ObjectModel | None = None
    object_error: HflRosError | None = None


class Estimator:
    """HFL-Net hand-object pose estimation for whole frames.

    Results, one per hand detection at or above the hand threshold, in input order:
    - hand: joints/vertices in the camera frame (wrist-relative when the translation fit fails), 2D joints in
      image px, wrist rotation = the MANO global rotation in camera axes, ``mano_pose`` in the convention of
      the hand's own side (left hands: the network's right-hand pose mirrored back), ``estimate_score`` =
      heat-map peakedness (see :func:`heatmap_peakedness`).
    - object: the EPnP-RANSAC pose with the original K, ``control_points_2d`` projected with it (or, when it
      failed, the per-point mean of the selected votes), ``estimate_score`` = RANSAC inlier fraction.
    - status, the first that applies: BAD_INPUT (bad box, unknown object class, or a hand beyond
      ``max_hands``; ``.error`` set; with a bad hand box nothing is estimated), INTERNAL_ERROR, PNP_FAILED,
      TRANSLATION_FAILED, NO_OBJECT_PAIRED or LOW_CONFIDENCE, OK. ``status_message`` lists every problem.

    Args:
        config: the options (:class:`~hfl_ros.estimator_config.EstimatorConfig`: checkpoint, hand models,
            object models, device, fp16, score thresholds, box scales, batch size, PnP refinement,
            vertices). The checkpoint is ignored when ``net`` is given. fp16 autocasts the forward on CUDA
            (ignored with a warning on the CPU); the network must stay float32 (``net.half()`` is refused).
        net: an already built HFLNet (e.g. random weights in tests).
        object_models: an ObjectModelLibrary (e.g. with dataset class aliases) or a directory, replacing
            ``config.object_models_dir``. Without any, no object pose is solved (paired hands then get
            BAD_INPUT with an UnknownObjectClassError).
        cudnn_benchmark: on CUDA, set ``torch.backends.cudnn.benchmark`` (process-wide): the crops have one
            fixed size, so cuDNN's per-shape algorithm search pays off after the first batch of each size.
        warm_up: run :meth:`warm_up` at the end of the constructor.
        **options: fields of ``config`` to change (``Estimator(net=net, device="cpu")``), validated like the
            node's parameters (ParameterError naming the option).

    The right hand model of ``config.mano_dir`` seeds the network before a checkpoint is loaded; the left one
    gives the left-hand faces (else the right faces with flipped winding). The device is resolved by
    :func:`hfl_ros.devices.resolve_device` (an unusable GPU raises DeviceError). Applications build the
    Estimator with :func:`hfl_ros.estimator_factory.build_estimator`, which also checks every asset and the
    device up front.
    """

    def __init__(
        self,
        config: EstimatorConfig | None = None,
        *,
        net: torch.nn.Module | None = None,
        object_models: str | Path | ObjectModelLibrary | None = None,
        cudnn_benchmark: bool = True,
        warm_up: bool = False,
        **options: Any,
    ):
        from .devices import resolve_device
        from .model.checkpoint import load_network
        from .model.mano import find_hand_model_file, load_hand_model_file

        self.config = cfg = (config or EstimatorConfig()).with_changes(**options)
        resolved = resolve_device(cfg.device)
        if resolved.fallback_reason:
            logger.info("device auto: running on the CPU because %s", resolved.fallback_reason)
        self.torch_device = resolved.device
        self.device = str(resolved.device)
        self.fp16 = cfg.fp16
        if self.fp16 and self.torch_device.type != "cuda":
            warnings.warn("fp16 needs CUDA; running in float32 on the CPU", RuntimeWarning, stacklevel=2)
            self.fp16 = False
        mano_dir = cfg.path("mano_dir")
        checkpoint_path = cfg.path("checkpoint_path")

        if net is None:
            if checkpoint_path is None:
                raise CheckpointError("Estimator needs a checkpoint_path (or a network object)")
            mano_path = find_hand_model_file(mano_dir, "right") if mano_dir is not None else None
            net, self.checkpoint_meta = load_network(checkpoint_path, mano_path=mano_path, map_location="cpu")
        else:
            self.checkpoint_meta = {}
        _refuse_reduced_precision(net)
        self.net = net.to(self.torch_device).eval()
        if self.torch_device.type == "cpu":
            from .model.cpu_fusion import fuse_for_cpu

            fuse_for_cpu(self.net)  # in place: a caller's ``net`` runs fused too (same weights, state_dict)
        self.input_size = int(getattr(net, "input_size", 256))
        if self.torch_device.type == "cuda" and cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        self._host_buffer: torch.Tensor | None = None  # pinned staging buffer of the packed outputs (CUDA)

        right_faces = np.asarray(self.net.mano_branch.mano_layer.faces, dtype=np.int64)
        left_faces = right_faces[:, ::-1].copy()
        if mano_dir is not None:
            if not Path(mano_dir).is_dir():
                raise HandModelError(f"hand model directory {mano_dir} does not exist")
            try:
                left_path = find_hand_model_file(mano_dir, "left")
            except HandModelError:
                logger.info("no left hand model in %s; using the right-hand faces, flipped", mano_dir)
            else:
                left_faces = np.asarray(load_hand_model_file(left_path)["f"], dtype=np.int64)
        self._faces = {Side.RIGHT: right_faces, Side.LEFT: left_faces}

        if object_models is None:
            object_models = cfg.path("object_models_dir")
        if object_models is None or isinstance(object_models, ObjectModelLibrary):
            self.object_models = object_models
        else:
            self.object_models = ObjectModelLibrary(object_models)
        if warm_up:
            self.warm_up()

    # --- public API -------------------------------------------------------------------------------------

    def reconfigure(self, config: EstimatorConfig) -> None:
        """Take the runtime options of ``config`` (score thresholds, ``min_estimate_score``); others stay."""
        self.config = replace(self.config, **{name: getattr(config, name) for name in RUNTIME_OPTIONS})

    def hand_faces(self, side: Side | str) -> np.ndarray:
        """Triangles (1538, 3) of the hand mesh of a side, wound outwards for the returned vertices."""
        return self._faces[Side(side)]

    def warm_up(self, batch_sizes: Sequence[int] = (1, 2), repeats: int = 2) -> float:
        """Run the whole path on dummy frames so that the first real frame does not pay one-off costs.

        On CUDA the first forwards create the context and cuDNN/cuBLAS handles, load kernels lazily and (with
        ``cudnn.benchmark``) search algorithms per batch size; on the CPU the fast path packs its weights per
        input size. ``batch_sizes``: pairs per forward to prepare (a frame with two hands is a batch of 2).
        Returns the seconds it took. The results are discarded; the network and settings are unchanged.
        """
        start = time.perf_counter()
        size = max(2 * self.input_size, 64)
        image = np.full((size, size, 3), 128, np.uint8)
        K = np.array([[size, 0.0, size / 2], [0.0, size, size / 2], [0.0, 0.0, 1.0]])
        box = np.array([0.25, 0.25, 0.75, 0.75]) * size
        for batch in batch_sizes:
            batch = max(1, min(int(batch), self.config.max_batch))
            frames = [(image, K, [Detection.hand(box, Side.RIGHT, 1.0)])] * batch
            for _ in range(max(1, repeats)):
                self.estimate_batch(frames)
        if self.torch_device.type == "cuda":
            torch.cuda.synchronize(self.torch_device)
        return time.perf_counter() - start

    def estimate(self, image: np.ndarray, K, detections: Sequence[Detection]) -> list[HandObjectResult]:
        """Results for the hands of one frame (one per hand at or above the score threshold, in input order).

        Raises BadImageError / BadCameraError for a bad image or K; a bad box or unknown object class only
        affects its pair (status BAD_INPUT with ``.error`` set).
        """
        (out,) = self.estimate_batch([(image, K, detections)])
        if isinstance(out, HflRosError):
            raise out
        return out

    def estimate_batch(self, frames: Sequence[Frame]) -> list[list[HandObjectResult] | HflRosError]:
        """Results for many frames; all their pairs go through forwards of at most ``max_batch``.

        A frame with a bad image or K gets its error (BadImageError / BadCameraError) in place of its list.
        """
        outputs: list[list[HandObjectResult | None] | HflRosError] = []
        pairs: list[_Pair] = []
        for index, (image, K, detections) in enumerate(frames):
            try:
                results, frame_pairs = self._prepare_frame(index, image, K, detections)
            except HflRosError as exc:
                outputs.append(exc)
                continue
            outputs.append(results)
            pairs.extend(frame_pairs)
        for start in range(0, len(pairs), self.config.max_batch):
            chunk = pairs[start : start + self.config.max_batch]
            for pair, result in zip(chunk, self._run_chunk(chunk)):
                outputs[pair.frame][pair.slot] = result
        return outputs

    # --- preparation ------------------------------------------------------------------------------------

    def _prepare_frame(self, index: int, image, K, detections) -> tuple[list, list[_Pair]]:
        image = validate_image(image)
        K = validate_K(K)
        height, width = image.shape[:2]
        hands = [d for d in detections if d.is_hand and d.score >= self.config.hand_score_threshold]
        objects = [
            d
            for d in detections
            if not d.is_hand and d.class_id is not None and d.score >= self.config.object_score_threshold
        ]
        object_boxes = np.array([_box_or_nan(o.box) for o in objects]).reshape(-1, 4)
        mirrored_image = None
        results: list[HandObjectResult | None] = [None] * len(hands)
        pairs: list[_Pair] = []
        skipped = self._beyond_max_hands(hands)
        for slot, hand in enumerate(hands):
            if slot in skipped:
                results[slot] = _failed(hand, Status.BAD_INPUT, skipped[slot])
                continue
            try:
                hand_box = validate_box(hand.box, (width, height))
            except BadBoxError as exc:
                error = BadBoxError(f"{hand.side.value} hand box: {exc}")
                results[slot] = _failed(hand, Status.BAD_INPUT, error)
                continue
            try:
                if hand.side is Side.LEFT and mirrored_image is None:
                    mirrored_image = mirror_image(image)
                source = mirrored_image if hand.side is Side.LEFT else image
                match = pair_object(hand_box, object_boxes)
                obj = objects[match] if match is not None else None
                pairs.append(self._prepare_pair(index, slot, hand, hand_box, obj, source, K))
            except Exception as exc:
                logger.exception("preparing a %s hand failed", hand.side.value)
                results[slot] = _failed(hand, Status.INTERNAL_ERROR, exc)
        return results, pairs

    def _beyond_max_hands(self, hands: Sequence[Detection]) -> dict[int, TooManyHandsError]:
        """The hands (by index) that ``max_hands`` leaves out: all but the highest-scoring (first on ties)."""
        limit = self.config.max_hands
        if not limit or len(hands) <= limit:
            return {}
        ranked = sorted(range(len(hands)), key=lambda i: -hands[i].score)
        return {i: TooManyHandsError(f"{len(hands)} hand detections, max_hands {limit}: this one (score "
                                     f"{hands[i].score:.2f}) is not among the {limit} best, not estimated")
                for i in ranked[limit:]}

    def _prepare_pair(self, index, slot, hand, hand_box, obj, source_image, K) -> _Pair:
        height, width = source_image.shape[:2]
        model, object_box, object_error = None, None, None
        if obj is not None:
            try:
                object_box = validate_box(obj.box, (width, height))
            except BadBoxError as exc:
                object_error = BadBoxError(f"object box (class {obj.class_id}): {exc}")
            if object_box is not None:
                try:
                    if self.object_models is None:
                        raise UnknownObjectClassError(
                            f"no object models are configured, so class {obj.class_id!r} has none"
                        )
                    model = self.object_models.get(obj.class_id)
                except HflRosError as exc:  # unknown class, or a bad model file
                    object_error = exc
        mirrored = hand.side is Side.LEFT
        crop_hand = mirror_box(hand_box, width) if mirrored else hand_box
        net_hand = scale_box(crop_hand, self.config.hand_box_scale)
        net_object = None
        if object_box is not None:
            net_object = scale_box(
                mirror_box(object_box, width) if mirrored else object_box, self.config.object_box_scale
            )
        crop = crop_for_pair(crop_hand, net_object, (width, height), size=self.input_size)
        return _Pair(
            frame=index,
            slot=slot,
            hand=hand,
            hand_box=hand_box,
            K=K,
            width=width,
            mirrored=mirrored,
            crop=crop,
            crop_image=warp_image(source_image, crop),
            net_hand_box=crop.apply_box(net_hand),
            net_object_box=crop.apply_box(net_object if net_object is not None else net_hand),
            obj=obj,
            model=model,
            object_error=object_error,
        )

    # --- network ----------------------------------------------------------------------------------------

    def _forward(self, pairs: list[_Pair]) -> dict[str, np.ndarray]:
        """One batched forward; outputs as float64 numpy arrays on the CPU."""
        with torch.inference_mode():
            images = torch.from_numpy(np.stack([p.crop_image for p in pairs])).to(self.torch_device)
            images = images.permute(0, 3, 1, 2).float().div_(255.0)
            boxes = torch.from_numpy(np.stack([[p.net_hand_box, p.net_object_box] for p in pairs]))
            boxes = boxes.to(self.torch_device, torch.float32)
            autocast = torch.autocast("cuda", dtype=torch.float16) if self.fp16 else nullcontext()
            with autocast:
                out = self.net(images, boxes[:, 0], boxes[:, 1])
            wanted = {
                "joints2d": out["joints2d"],
                "joints3d": out["joints3d"],
                "mano_pose": out["mano_pose"],
                "mano_shape": out["mano_shape"],
                "wrist_rotation": out["mano_rotmat"][:, 0],
                "obj_vote": out["obj_vote"],
                "obj_conf": out["obj_conf"],
                "hand_score": heatmap_peakedness(out["heatmaps"]),
            }
            if self.config.with_vertices:
                wanted["verts3d"] = out["verts3d"]
            return self._to_host(wanted, len(pairs))

    def _to_host(self, tensors: dict[str, torch.Tensor], batch: int) -> dict[str, np.ndarray]:
        """The outputs as float64 numpy arrays, in one device-to-host copy.

        The outputs are packed into one float32 (batch, N) tensor first: one copy (into a reused pinned buffer
        on CUDA) instead of one synchronising pageable copy per output. The values are exactly those of a
        per-tensor ``.float().cpu()``.
        """
        shapes = {k: tuple(v.shape[1:]) for k, v in tensors.items()}
        packed = torch.cat([v.float().reshape(batch, -1) for v in tensors.values()], dim=1)
        if packed.device.type == "cuda":
            if self._host_buffer is None or self._host_buffer.numel() < packed.numel():
                self._host_buffer = torch.empty(packed.numel(), dtype=torch.float32, pin_memory=True)
            host = self._host_buffer[: packed.numel()].view(packed.shape)
            host.copy_(packed, non_blocking=True)
            torch.cuda.current_stream(packed.device).synchronize()
        else:
            host = packed
        flat = host.numpy()
        out, start = {}, 0
        for key, shape in shapes.items():
            size = int(np.prod(shape, dtype=np.int64))
            out[key] = flat[:, start : start + size].reshape(batch, *shape).astype(np.float64)
            start += size
        return out

    def _run_chunk(self, pairs: list[_Pair]) -> list[HandObjectResult]:
        try:
            out = self._forward(pairs)
        except Exception as exc:
            logger.exception("the network forward failed for %d pairs", len(pairs))
            return [_failed(p.hand, Status.INTERNAL_ERROR, exc) for p in pairs]
        out = _unmirror(out, pairs)
        results = []
        for i, pair in enumerate(pairs):
            try:
                results.append(self._finish(pair, {k: v[i] for k, v in out.items()}))
            except Exception as exc:
                logger.exception("post-processing a %s hand failed", pair.hand.side.value)
                results.append(_failed(pair.hand, Status.INTERNAL_ERROR, exc))
        return results

    # --- post-processing --------------------------------------------------------------------------------

    def _finish(self, pair: _Pair, out: dict[str, np.ndarray]) -> HandObjectResult:
        """Object pose and hand translation of one pair from its (un-mirrored, image-px) network outputs."""
        messages: list[str] = []
        joints_rel = out["joints3d"]
        t, reproj, t_ok = fit_hand_translation(joints_rel, out["joints2d"], pair.K)
        offset = t if t_ok else np.zeros(3)
        hand = HandEstimate(
            side=pair.hand.side,
            box=np.asarray(pair.hand.box, np.float64),
            detection_score=pair.hand.score,
            estimate_score=float(out["hand_score"]),
            joints3d=joints_rel + offset,
            verts3d=out["verts3d"] + offset if "verts3d" in out else np.zeros((0, 3)),
            joints2d=out["joints2d"],
            wrist_rotation=out["wrist_rotation"],
            wrist_translation=offset.copy(),
            translation_valid=t_ok,
            reprojection_error_px=reproj,
            mano_pose=out["mano_pose"],
            mano_shape=out["mano_shape"],
        )
        if not t_ok:
            messages.append("hand translation fit failed; joints are wrist-relative")

        obj_estimate = None
        pnp_failed = False
        if pair.obj is not None:
            obj_estimate = ObjectEstimate(
                class_id=str(pair.obj.class_id),
                box=np.asarray(pair.obj.box, np.float64),
                score=pair.obj.score,
            )
            if pair.model is not None:
                pnp_failed = not self._solve_object(pair, out, obj_estimate, messages)
            else:
                messages.insert(0, str(pair.object_error))
        else:
            messages.append("no object box overlaps the hand")

        if pair.object_error is not None:
            status = Status.BAD_INPUT
        elif pnp_failed:
            status = Status.PNP_FAILED
        elif not t_ok:
            status = Status.TRANSLATION_FAILED
        elif pair.obj is None:
            status = Status.NO_OBJECT_PAIRED
        else:
            status = Status.OK
        usable = status in (Status.OK, Status.NO_OBJECT_PAIRED)
        if usable and self._low_confidence(hand, obj_estimate, messages):
            status = Status.LOW_CONFIDENCE
        return HandObjectResult(
            status=status,
            hand=hand,
            object=obj_estimate,
            status_message="; ".join(messages),
            error=pair.object_error,
        )

    def _low_confidence(self, hand: HandEstimate, obj: ObjectEstimate | None, messages: list[str]) -> bool:
        """Whether the hand's or the object's estimate score is under ``min_estimate_score`` (noted)."""
        least = self.config.min_estimate_score
        low = [f"{what} estimate score {score:.2f}" for what, score in
               (("hand", hand.estimate_score), ("object", obj.estimate_score if obj is not None else 1.0))
               if score < least]
        if low:
            messages.append(f"{' and '.join(low)} below min_estimate_score {least:g}")
        return bool(low)

    def _solve_object(self, pair: _Pair, out: dict, estimate: ObjectEstimate, messages: list[str]) -> bool:
        """Fill ``estimate`` from the votes by EPnP-RANSAC with the original K; True if the pose is valid."""
        votes, conf = out["obj_vote"], out["obj_conf"]
        points2d, kp_index = select_votes(votes, conf, VOTES_PER_POINT, VOTE_THRESHOLD)
        control_points = pair.model.control_points
        result = solve_pnp(control_points[kp_index], points2d, pair.K, refine=self.config.refine_pnp)
        estimate.vote_count = result.vote_count
        estimate.inlier_count = len(result.inliers) if result.valid else 0
        estimate.estimate_score = result.inlier_fraction if result.valid else 0.0
        if result.valid:
            estimate.valid = True
            estimate.rotation, estimate.translation = result.R, result.t
            estimate.reprojection_error_px = result.reproj_error
            estimate.control_points_2d = project(control_points @ result.R.T + result.t, pair.K)
            return True
        estimate.control_points_2d = _voted_mean(votes, conf)
        messages.append(f"object pose failed: {result.reason}")
        return False


def _refuse_reduced_precision(net: torch.nn.Module) -> None:
    """HflRosError (InputError) when a floating parameter or buffer of ``net`` is not float32."""
    for kind, items in (("parameter", net.named_parameters()), ("buffer", net.named_buffers())):
        for name, tensor in items:
            if tensor.is_floating_point() and tensor.dtype != torch.float32:
                raise ReducedPrecisionNetworkError(
                    f"the network's {kind} {name} is {tensor.dtype}; the Estimator needs a float32 network "
                    "(do not call net.half()): pass fp16=True to run the forward under float16 autocast, "
                    "which keeps MANO and the box arithmetic in float32"
                )


def _voted_mean(votes: np.ndarray, conf: np.ndarray) -> np.ndarray:
    """Per control point, the mean of its votes above the threshold among the best, else of the best ones."""
    best_votes, best_conf = top_votes(votes, conf, VOTES_PER_POINT)
    keep = best_conf > VOTE_THRESHOLD
    weights = np.where(keep.any(axis=0, keepdims=True), keep, True).astype(np.float64)
    return (best_votes * weights[..., None]).sum(0) / weights.sum(0)[:, None]


def _unmirror(out: dict[str, np.ndarray], pairs: list[_Pair]) -> dict[str, np.ndarray]:
    """Crop px -> image px for 2D outputs and left hands back from the mirrored frame, for the whole chunk."""
    scale = np.array([p.crop.s for p in pairs])
    offset = np.array([p.crop.offset for p in pairs])
    left = np.array([p.mirrored for p in pairs])
    x_max = np.array([p.width - 1 for p in pairs], dtype=np.float64)
    obj_boxes = np.array([p.net_object_box for p in pairs])
    out = dict(out)

    def to_image(points: np.ndarray) -> np.ndarray:
        shape = (-1,) + (1,) * (points.ndim - 2)
        image_px = (points - offset.reshape(*shape, 2)) / scale.reshape((*shape, 1))
        image_px[..., 0] = np.where(
            left.reshape(shape), x_max.reshape(shape) - image_px[..., 0], image_px[..., 0]
        )
        return image_px

    out["joints2d"] = to_image(out["joints2d"])
    origin = obj_boxes[:, None, None, None, :2]
    size = obj_boxes[:, None, None, None, 2:] - origin
    out["obj_vote"] = to_image(origin + out["obj_vote"] * size)
    flip = np.where(left, -1.0, 1.0)[:, None, None] * np.array([1.0, 0.0, 0.0]) + np.array([0.0, 1.0, 1.0])
    out["joints3d"] = out["joints3d"] * flip
    if "verts3d" in out:
        out["verts3d"] = out["verts3d"] * flip
    out["wrist_rotation"] = np.where(
        left[:, None, None], mirror_rotation(out["wrist_rotation"]), out["wrist_rotation"]
    )
    out["mano_pose"] = np.where(left[:, None], mirror_mano_pose(out["mano_pose"]), out["mano_pose"])
    return out


def _box_or_nan(box) -> np.ndarray:
    """A detection box as (4,) float64 for pairing; NaN (pairs with nothing) when it is not 4 numbers."""
    try:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return np.full(4, np.nan)
    return b if b.size == 4 else np.full(4, np.nan)


def _failed(hand: Detection, status: Status, error: Exception) -> HandObjectResult:
    """A result with the hand's detection only, for a pair that could not be estimated."""
    estimate = HandEstimate(side=hand.side, box=np.asarray(hand.box, np.float64), detection_score=hand.score)
    typed = error if isinstance(error, HflRosError) else None
    message = str(error) if typed else f"{type(error).__name__}: {error}"
    return HandObjectResult(status=status, hand=estimate, status_message=message, error=typed)

"""DexYCB reader (spec §9): the toolkit's layout and s0 split, and the official code's preprocessed JSON.

Toolkit layout::

    <root>/<subject>/<sequence>/meta.yml                    serials, num_frames, ycb_ids, ycb_grasp_ind,
                                                            mano_sides, mano_calib
    <root>/<subject>/<sequence>/<serial>/color_<f:06d>.jpg  RGB image
    <root>/<subject>/<sequence>/<serial>/labels_<f:06d>.npz seg (H, W), pose_y (O, 3, 4), pose_m (1, 51),
                                                            joint_3d (1, 21, 3), joint_2d (1, 21, 2)
    <root>/calibration/intrinsics/<serial>_640x480.yml      color: {fx, fy, ppx, ppy}
    <root>/models/<ycb name>/points.xyz                     object points in metres

Annotations are already in the OpenCV camera frame; joints are in JOINT_NAMES (manopth) order. ``pose_m``
holds the global axis-angle, 45 PCA coefficients of the side's MANO model (flat_hand_mean=False) and the
translation; the finger pose is ``coeffs @ hands_components + hands_mean`` with the side's model file, which
is why a MANO directory is needed. Left hands are returned as they are (not mirrored); the training dataset
mirrors them.

The s0 split (the toolkit's "seen subjects, camera views and grasped objects"): subjects and serials are
indexed in the toolkit's fixed lists below, sequences by their position in the sorted listing of a subject's
folder. train = all 10 subjects, all 8 cameras, sequences with index % 5 != 4; val = subjects 0-1 and
test = subjects 2-9, all cameras, sequences with index % 5 == 4. Frames without a hand annotation (joint_3d
all -1) give NaN hand fields; the training dataset and the evaluation skip them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..errors import AssetError, InputError
from ..geometry.camera import project
from ..geometry.object_models import ObjectModel, load_object_model
from ..results import Side
from .sample import HandObjectSample
from .ycb import name_for_class_id

#: The toolkit's subject list; s0 indexes subjects by their position here.
SUBJECTS: tuple[str, ...] = (
    "20200709-subject-01",
    "20200813-subject-02",
    "20200820-subject-03",
    "20200903-subject-04",
    "20200908-subject-05",
    "20200918-subject-06",
    "20200928-subject-07",
    "20201002-subject-08",
    "20201015-subject-09",
    "20201022-subject-10",
)
#: The toolkit's camera serial list.
SERIALS: tuple[str, ...] = (
    "836212060125",
    "839512060362",
    "840412060917",
    "841412060263",
    "932122060857",
    "932122060861",
    "932122061900",
    "932122062010",
)
SPLITS = ("train", "val", "test", "all")
IMAGE_SIZE = (640, 480)


@dataclass(frozen=True)
class DexYCBFrame:
    """One camera frame: subject, sequence, camera serial and frame number."""

    subject: str
    sequence: str
    serial: str
    frame: int

    @property
    def key(self) -> str:
        return f"{self.subject}/{self.sequence}/{self.serial}/{self.frame:06d}"


def s0_selection(split: str) -> tuple[list[int], list[int], Callable[[int], bool]]:
    """(subject indices, serial indices, predicate on the sequence index) of the s0 split."""
    every_serial = list(range(len(SERIALS)))
    if split == "train":
        return list(range(10)), every_serial, lambda i: i % 5 != 4
    if split == "val":
        return [0, 1], every_serial, lambda i: i % 5 == 4
    if split == "test":
        return list(range(2, 10)), every_serial, lambda i: i % 5 == 4
    if split == "all":
        return list(range(10)), every_serial, lambda i: True
    raise InputError(f"DexYCB split must be one of {SPLITS}, got {split!r}")


def _read_yaml(path: Path) -> dict:
    try:
        with path.open() as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise AssetError(f"DexYCB file {path} not found") from None
    except (OSError, yaml.YAMLError) as exc:
        raise AssetError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise AssetError(f"{path}: expected a mapping")
    return data


def intrinsics_to_K(intr: dict, where: str) -> np.ndarray:
    """K from a {fx, fy, ppx, ppy} mapping."""
    try:
        fx, fy, cx, cy = (float(intr[k]) for k in ("fx", "fy", "ppx", "ppy"))
    except (KeyError, TypeError, ValueError):
        raise AssetError(f"{where}: intrinsics need fx, fy, ppx, ppy, got {intr!r}") from None
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


class PcaPoseConverter:
    """MANO PCA coefficients -> axis-angle pose, with each side's ``hands_components`` and ``hands_mean``."""

    def __init__(self, mano_dir: str | Path | None):
        self.mano_dir = None if mano_dir is None else Path(mano_dir)
        self._bases: dict[Side, tuple[np.ndarray, np.ndarray]] = {}

    def basis(self, side: Side) -> tuple[np.ndarray, np.ndarray]:
        if side not in self._bases:
            if self.mano_dir is None:
                raise AssetError(
                    "DexYCB poses are MANO PCA coefficients: give the MANO directory (mano_dir) holding "
                    "MANO_RIGHT.pkl / MANO_LEFT.pkl"
                )
            from ..model.mano import find_hand_model_file, load_hand_model_file

            model = load_hand_model_file(find_hand_model_file(self.mano_dir, side.value))
            comps = np.asarray(model["hands_components"], dtype=np.float64)
            mean = np.asarray(model["hands_mean"], dtype=np.float64).reshape(-1)
            self._bases[side] = (comps, mean)
        return self._bases[side]

    def full_pose(self, pose_m, side: Side) -> np.ndarray:
        """(48,) axis-angle pose (global rotation, then the 45 finger values with the mean added) from
        ``pose_m`` = global rotation (3), 45 PCA coefficients[, translation (3)]."""
        pose_m = np.asarray(pose_m, dtype=np.float64).reshape(-1)
        if pose_m.size not in (48, 51):
            raise AssetError(f"DexYCB pose_m must have 48 or 51 values, got {pose_m.size}")
        comps, mean = self.basis(side)
        fingers = pose_m[3:48] @ comps + mean
        return np.concatenate([pose_m[:3], fingers])


def _hand_present(joint_3d: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(joint_3d)) and not np.all(joint_3d == -1))


class DexYCBDataset(Sequence[HandObjectSample]):
    """DexYCB frames of one split as :class:`HandObjectSample`.

    Args:
        root: the DexYCB folder ($DEX_YCB_DIR).
        split: "train", "val", "test" (s0) or "all".
        mano_dir: directory with MANO_RIGHT.pkl and MANO_LEFT.pkl (for the PCA -> axis-angle mapping).
        models_dir: folder of ``<ycb name>/points.xyz`` (default ``<root>/models``).
        use_json: read ``dex_ycb_s0_<train|test>_data.json`` (None: when it exists in ``root``).
        json_path: that file, when elsewhere.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        mano_dir: str | Path | None = None,
        models_dir: str | Path | None = None,
        use_json: bool | None = None,
        json_path: str | Path | None = None,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise AssetError(f"DexYCB folder {self.root} does not exist")
        s0_selection(split)  # validates the name
        self.split = split
        self.models_dir = Path(models_dir) if models_dir is not None else self.root / "models"
        self.poses = PcaPoseConverter(mano_dir)
        self._models: dict[int, ObjectModel] = {}
        self._seq_meta: dict[tuple[str, str], dict] = {}
        self._K: dict[str, np.ndarray] = {}
        json_file = Path(json_path) if json_path is not None else self.root / f"dex_ycb_s0_{split}_data.json"
        if use_json is None:
            use_json = json_file.is_file()
        self._json_records: list[dict] | None = self._read_json(json_file) if use_json else None
        self.frames: list[DexYCBFrame] = [] if self._json_records is not None else self._list_frames()

    # -- listing ---------------------------------------------------------------------------------------------
    def _list_frames(self) -> list[DexYCBFrame]:
        subject_ind, serial_ind, keep_sequence = s0_selection(self.split)
        frames = []
        for s in subject_ind:
            subject_dir = self.root / SUBJECTS[s]
            if not subject_dir.is_dir():
                continue
            sequences = sorted(p.name for p in subject_dir.iterdir() if (p / "meta.yml").is_file())
            for index, sequence in enumerate(sequences):
                if not keep_sequence(index):
                    continue
                meta = self._meta(SUBJECTS[s], sequence)
                for c in serial_ind:
                    serial = SERIALS[c]
                    cam_dir = subject_dir / sequence / serial
                    if not cam_dir.is_dir():
                        continue
                    for frame in range(int(meta["num_frames"])):
                        if (cam_dir / f"labels_{frame:06d}.npz").is_file():
                            frames.append(DexYCBFrame(SUBJECTS[s], sequence, serial, frame))
        if not frames:
            raise AssetError(f"no DexYCB {self.split} frames (s0) under {self.root}")
        return frames

    @staticmethod
    def _read_json(path: Path) -> list[dict]:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise AssetError(f"cannot read {path}: {exc}") from None
        if not isinstance(data, dict) or not all(re.fullmatch(r"id_\d+", k) for k in data):
            raise AssetError(f"{path}: expected a dict keyed 'id_<n>'")
        return [data[k] for k in sorted(data, key=lambda k: int(k[3:]))]

    def __len__(self) -> int:
        return len(self._json_records) if self._json_records is not None else len(self.frames)

    @property
    def frame_keys(self) -> list[str]:
        """subject/sequence/serial/frame of every item (the JSON records' from their color_file paths)."""
        if self._json_records is None:
            return [f.key for f in self.frames]
        return [_json_frame_key(Path(r.get("color_file", "")), i) for i, r in enumerate(self._json_records)]

    # -- files -----------------------------------------------------------------------------------------------
    def _meta(self, subject: str, sequence: str) -> dict:
        key = (subject, sequence)
        if key not in self._seq_meta:
            meta = _read_yaml(self.root / subject / sequence / "meta.yml")
            missing = {"num_frames", "ycb_ids", "ycb_grasp_ind", "mano_sides"} - set(meta)
            if missing:
                raise AssetError(f"{self.root / subject / sequence / 'meta.yml'}: missing {sorted(missing)}")
            self._seq_meta[key] = meta
        return self._seq_meta[key]

    def intrinsics(self, serial: str) -> np.ndarray:
        if serial not in self._K:
            path = self.root / "calibration" / "intrinsics" / f"{serial}_{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}.yml"
            data = _read_yaml(path)
            if "color" not in data:
                raise AssetError(f"{path}: no 'color' intrinsics")
            self._K[serial] = intrinsics_to_K(data["color"], str(path))
        return self._K[serial]

    def object_model(self, class_id: int) -> ObjectModel:
        if class_id not in self._models:
            path = self.models_dir / name_for_class_id(class_id) / "points.xyz"
            if not path.is_file():
                raise AssetError(f"object model {path} not found (set models_dir to the YCB models folder)")
            self._models[class_id] = load_object_model(path, str(class_id))
        return self._models[class_id]

    def _resolve(self, path_str: str) -> Path:
        """A path from the official JSON: as written if it exists, else re-rooted at this dataset's root."""
        path = Path(path_str)
        if path.is_file():
            return path
        parts = path.parts
        for i, part in enumerate(parts):
            if part in SUBJECTS or part in ("object_render", "calibration", "models"):
                candidate = self.root.joinpath(*parts[i:])
                if candidate.exists():
                    return candidate
        return self.root / path

    # -- samples ---------------------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> HandObjectSample:  # type: ignore[override]
        if isinstance(index, slice):
            raise TypeError("DexYCBDataset does not support slicing; index frames one at a time")
        if self._json_records is not None:
            return self._sample_from_json(index)
        frame = self.frames[index]
        cam_dir = self.root / frame.subject / frame.sequence / frame.serial
        label_path = cam_dir / f"labels_{frame.frame:06d}.npz"
        try:
            with np.load(label_path) as label:
                arrays = {k: label[k] for k in ("seg", "pose_y", "pose_m", "joint_3d", "joint_2d")}
        except FileNotFoundError:
            raise AssetError(f"DexYCB label {label_path} not found") from None
        except (OSError, KeyError, ValueError) as exc:
            raise AssetError(f"cannot read DexYCB label {label_path}: {exc}") from None
        meta = self._meta(frame.subject, frame.sequence)
        grasp = int(meta["ycb_grasp_ind"])
        class_id = int(meta["ycb_ids"][grasp])
        seg = np.asarray(arrays["seg"])
        return self._build(
            image_path=cam_dir / f"color_{frame.frame:06d}.jpg",
            K=self.intrinsics(frame.serial),
            side=Side(str(meta["mano_sides"][0])),
            pose_m=arrays["pose_m"],
            joint_3d=arrays["joint_3d"],
            joint_2d=arrays["joint_2d"],
            pose_y=arrays["pose_y"][grasp],
            class_id=class_id,
            object_mask=seg == class_id,
            hand_mask=seg == 255,
            betas=self._betas(meta),
            meta={"frame_key": frame.key, "subject": frame.subject, "sequence": frame.sequence,
                  "serial": frame.serial, "frame": frame.frame, "label_path": str(label_path)},
        )

    def _betas(self, meta: dict) -> np.ndarray:
        calib = meta.get("mano_calib")
        if not calib:
            return np.zeros(10)
        path = self.root / "calibration" / f"mano_{calib[0]}" / "mano.yml"
        data = _read_yaml(path)
        betas = np.asarray(data.get("betas", ()), dtype=np.float64).reshape(-1)
        if betas.size != 10:
            raise AssetError(f"{path}: expected 10 betas, got {betas.size}")
        return betas

    def _sample_from_json(self, index: int) -> HandObjectSample:
        rec = self._json_records[index]
        where = f"DexYCB JSON record {index}"
        try:
            grasp = int(rec["ycb_grasp_ind"])
            class_id = int(rec["ycb_ids"][grasp])
            image_path = self._resolve(rec["color_file"])
            object_mask = None
            if rec.get("object_seg_file"):
                seg_path = self._resolve(rec["object_seg_file"])
                if seg_path.is_file():
                    import cv2

                    seg = cv2.imread(str(seg_path), cv2.IMREAD_UNCHANGED)
                    if seg is None:
                        raise AssetError(f"cannot read mask {seg_path}")
                    object_mask = (seg.max(axis=2) if seg.ndim == 3 else seg) > 0
            pose_y = np.asarray(rec["pose_y"], dtype=np.float64).reshape(-1, 3, 4)[grasp]
            return self._build(
                image_path=image_path,
                K=intrinsics_to_K(rec["intrinsics"], where),
                side=Side(str(rec["mano_side"])),
                pose_m=rec["pose_m"],
                joint_3d=rec["joint_3d"],
                joint_2d=rec["joint_2d"],
                pose_y=pose_y,
                class_id=class_id,
                object_mask=object_mask,
                hand_mask=None,
                betas=np.asarray(rec["mano_betas"], dtype=np.float64).reshape(10),
                meta={"frame_key": _json_frame_key(image_path, index), "json_index": index},
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise AssetError(f"{where}: malformed ({exc!r})") from None

    def _build(self, *, image_path, K, side, pose_m, joint_3d, joint_2d, pose_y, class_id, object_mask,
               hand_mask, betas, meta) -> HandObjectSample:
        joints3d = np.asarray(joint_3d, dtype=np.float64).reshape(21, 3)
        joints2d = np.asarray(joint_2d, dtype=np.float64).reshape(21, 2)
        pose_m = np.asarray(pose_m, dtype=np.float64).reshape(-1)
        if _hand_present(joints3d):
            pose = self.poses.full_pose(pose_m[:48], side)
        else:
            joints3d, joints2d, pose = np.full((21, 3), np.nan), np.full((21, 2), np.nan), np.full(48, np.nan)
        model = self.object_model(class_id)
        obj_R, obj_t = pose_y[:, :3].astype(np.float64), pose_y[:, 3].astype(np.float64)
        cp2d = project(model.control_points @ obj_R.T + obj_t, K)
        finite = joints2d[np.all(np.isfinite(joints2d), axis=1)]
        hand_box = (np.concatenate([finite.min(0), finite.max(0)]) if len(finite) else np.full(4, np.nan))
        return HandObjectSample(
            image_path=Path(image_path),
            K=K,
            side=side,
            mano_pose=pose,
            mano_shape=betas,
            joints3d=joints3d,
            joints2d=joints2d,
            class_id=str(class_id),
            object_name=name_for_class_id(class_id),
            object_R=obj_R,
            object_t=obj_t,
            control_points3d=model.control_points,
            control_points2d=cp2d,
            hand_box=hand_box,
            object_box=np.concatenate([cp2d.min(0), cp2d.max(0)]),
            object_mask=object_mask,
            hand_mask=hand_mask,
            hand_translation=joints3d[0].copy(),
            meta={"dataset": "dexycb", "split": self.split, "mano_translation": pose_m[48:51].copy(), **meta},
        )


def _json_frame_key(image_path: Path, index: int) -> str:
    """subject/sequence/serial/frame from a color_<f>.jpg path, else the record index."""
    parts = image_path.parts
    match = re.fullmatch(r"color_(\d+)\.\w+", image_path.name)
    if match and len(parts) >= 4:
        return f"{parts[-4]}/{parts[-3]}/{parts[-2]}/{match.group(1)}"
    return f"id_{index}"

"""HO3D v2 / v3 reader (spec §9): meta pickles, RGB images, split files, and the official preprocessed JSON.

Layout::

    <root>/train.txt, <root>/evaluation.txt          "SEQ/ID" lines (optional: else every meta file is listed)
    <root>/<split>/<SEQ>/meta/<ID>.pkl               annotations, OpenGL axes (x right, y up, z backward)
    <root>/<split>/<SEQ>/rgb/<ID>.png | .jpg         v2 images are .png, v3 images .jpg (found automatically;
                                                     .webp too, for sets cut by hfl_ros.data.precrop)
    <root>/<split>/<SEQ>/seg/<ID>.png | .jpg         optional masks, colour coded: object green, hand blue
    <root>/train_segLabel/<SEQ>/<ID>.png             optional masks of the official code: nonzero = object
    <models_dir>/<objName>/points.xyz                YCB object points in metres (default <root>/models)
    <root>/ho3d_train_data.json                      optional, the official code's preprocessed train records

Every annotation is converted to the OpenCV camera frame with C = diag(1, -1, -1): object [R|t] -> C [R|t],
3D joints x -> C x, and the MANO global rotation R_g -> C R_g. Joints are reordered from HO3D's (MANO) order
to :data:`~hfl_ros.hand_joints.JOINT_NAMES` order. A full hand annotation (21 joints, as in the train split)
is used in any split; the real evaluation split has only the wrist (handJoints3D of shape (3,)) and the hand
box, so the other joints and the MANO parameters are NaN there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import AssetError, InputError
from ..geometry.camera import project
from ..geometry.object_models import ObjectModel, load_object_model
from ..geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ..hand_joints import MANO_TO_OUTPUT_ORDER
from ..results import Side
from ..safe_pickle import load_numpy_pickle
from .sample import HandObjectSample
from .ycb import class_id_for_name

#: OpenGL (HO3D annotations) -> OpenCV camera axes.
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0])
SPLITS = ("train", "evaluation")
IMAGE_SUFFIXES = {"v2": ".png", "v3": ".jpg"}
OFFICIAL_JSON = "ho3d_train_data.json"


@dataclass(frozen=True)
class HO3DFrame:
    """One frame of a split: sequence name and frame id (file stem, e.g. "0000")."""

    seq: str
    frame_id: str

    @property
    def key(self) -> str:
        return f"{self.seq}/{self.frame_id}"


def read_split_file(path: Path) -> list[HO3DFrame]:
    """Frames of a "SEQ/ID" list file (blank lines ignored)."""
    frames = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        seq, sep, frame_id = line.partition("/")
        if not sep or not seq or not frame_id:
            raise AssetError(f"{path}:{number}: expected 'SEQ/ID', got {line!r}")
        frames.append(HO3DFrame(seq, frame_id))
    return frames


def opengl_to_opencv_pose(rot_axis_angle, trans) -> tuple[np.ndarray, np.ndarray]:
    """An object -> OpenGL-camera pose (axis-angle, translation) as an object -> OpenCV-camera (R, t)."""
    R = axis_angle_to_matrix(np.asarray(rot_axis_angle, dtype=np.float64).reshape(3))
    t = np.asarray(trans, dtype=np.float64).reshape(3)
    return OPENGL_TO_OPENCV @ R, OPENGL_TO_OPENCV @ t


def opengl_to_opencv_mano_pose(pose) -> np.ndarray:
    """A MANO pose (48,) whose global rotation is in OpenGL axes, with the global rotation in OpenCV axes."""
    out = np.asarray(pose, dtype=np.float64).reshape(48).copy()
    out[:3] = matrix_to_axis_angle(OPENGL_TO_OPENCV @ axis_angle_to_matrix(out[:3]))
    return out


def _array(value, shape: tuple[int, ...], what: str, where: str) -> np.ndarray:
    if value is None:
        raise AssetError(f"{where}: field {what!r} is missing")
    arr = np.asarray(value, dtype=np.float64)
    if arr.size != int(np.prod(shape)):
        raise AssetError(f"{where}: field {what!r} has shape {arr.shape}, expected {shape}")
    return arr.reshape(shape)


def _tight_box(points: np.ndarray) -> np.ndarray:
    pts = points[np.all(np.isfinite(points), axis=1)]
    if len(pts) == 0:
        return np.full(4, np.nan)
    return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


class HO3DDataset(Sequence[HandObjectSample]):
    """HO3D v2 or v3 frames of one split as :class:`HandObjectSample` (read lazily, one meta pickle per item).

    Args:
        root: the HO3D folder (holding ``train/``, ``evaluation/`` and the split files).
        split: "train" or "evaluation".
        models_dir: folder of ``<objName>/points.xyz`` (default ``<root>/models``).
        version: "v2" (.png), "v3" (.jpg) or "auto" (per sequence, whichever image exists).
        use_json: read the train frames from ``ho3d_train_data.json`` (None: when that file exists).
        json_path: where that JSON is (default ``<root>/ho3d_train_data.json``).
        skip_unannotated: drop frames whose meta has no hand annotation (reads every meta once).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        models_dir: str | Path | None = None,
        version: str = "auto",
        use_json: bool | None = None,
        json_path: str | Path | None = None,
        skip_unannotated: bool = False,
    ):
        self.root = Path(root)
        if split not in SPLITS:
            raise InputError(f"HO3D split must be one of {SPLITS}, got {split!r}")
        if version not in ("auto", *IMAGE_SUFFIXES):
            raise InputError(f"HO3D version must be 'auto', 'v2' or 'v3', got {version!r}")
        if not (self.root / split).is_dir():
            raise AssetError(f"HO3D split folder {self.root / split} does not exist")
        self.split = split
        self.version = version
        self.models_dir = Path(models_dir) if models_dir is not None else self.root / "models"
        self._models: dict[str, ObjectModel] = {}
        self._suffix_of_seq: dict[str, str] = {}
        json_file = Path(json_path) if json_path is not None else self.root / OFFICIAL_JSON
        if use_json is None:
            use_json = split == "train" and json_file.is_file()
        self._json_records: list[dict] | None = None
        if use_json:
            self._json_records = self._read_json(json_file)
            self.frames = [HO3DFrame(*r["seqName_id"].split("/", 1)) for r in self._json_records]
        else:
            self.frames = self._list_frames()
        if skip_unannotated and self._json_records is None:
            self.frames = [f for f in self.frames if self._meta(f).get("handJoints3D") is not None]

    # -- listing ---------------------------------------------------------------------------------------------
    def _list_frames(self) -> list[HO3DFrame]:
        split_file = self.root / f"{self.split}.txt"
        if split_file.is_file():
            return read_split_file(split_file)
        frames = [
            HO3DFrame(meta.parent.parent.name, meta.stem)
            for meta in sorted((self.root / self.split).glob("*/meta/*.pkl"))
        ]
        if not frames:
            raise AssetError(f"no {split_file.name} and no meta/*.pkl files under {self.root / self.split}")
        return frames

    @staticmethod
    def _read_json(path: Path) -> list[dict]:
        try:
            records = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise AssetError(f"cannot read {path}: {exc}") from None
        valid = isinstance(records, list) and all(isinstance(r, dict) and "seqName_id" in r for r in records)
        if not valid:
            raise AssetError(f"{path}: expected a list of records with 'seqName_id'")
        return records

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def frame_keys(self) -> list[str]:
        return [f.key for f in self.frames]

    # -- files -----------------------------------------------------------------------------------------------
    def seq_dir(self, frame: HO3DFrame) -> Path:
        return self.root / self.split / frame.seq

    def meta_path(self, frame: HO3DFrame) -> Path:
        return self.seq_dir(frame) / "meta" / f"{frame.frame_id}.pkl"

    def _meta(self, frame: HO3DFrame) -> dict:
        meta = load_numpy_pickle(self.meta_path(frame), "HO3D meta pickle")
        if not isinstance(meta, dict):
            raise AssetError(f"{self.meta_path(frame)}: expected a dict, got {type(meta).__name__}")
        return meta

    def image_path(self, frame: HO3DFrame) -> Path:
        rgb = self.seq_dir(frame) / "rgb"
        if self.version != "auto":
            return rgb / f"{frame.frame_id}{IMAGE_SUFFIXES[self.version]}"
        suffix = self._suffix_of_seq.get(frame.seq)
        if suffix is None or not (rgb / f"{frame.frame_id}{suffix}").is_file():
            for candidate in (".png", ".jpg", ".webp"):  # .webp: pre-cropped sets (hfl_ros.data.precrop)
                if (rgb / f"{frame.frame_id}{candidate}").is_file():
                    suffix = candidate
                    break
            else:
                raise AssetError(f"no image {rgb / frame.frame_id}.png, .jpg or .webp")
            self._suffix_of_seq[frame.seq] = suffix
        return rgb / f"{frame.frame_id}{suffix}"

    def object_model(self, name: str) -> ObjectModel:
        """The points (and control points) of a YCB object, loaded once."""
        if name not in self._models:
            path = self.models_dir / name / "points.xyz"
            if not path.is_file():
                raise AssetError(f"object model {path} not found (set models_dir to the YCB models folder)")
            self._models[name] = load_object_model(path, class_id_for_name(name))
        return self._models[name]

    def _masks(self, frame: HO3DFrame) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(object mask, hand mask) at the mask file's own resolution, or None where there is no file."""
        label = self.root / "train_segLabel" / frame.seq / f"{frame.frame_id}.png"
        if label.is_file():
            img = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise AssetError(f"cannot read mask {label}")
            if img.ndim == 3:
                img = img.max(axis=2)
            return img > 0, None
        for suffix in (".png", ".jpg"):
            seg = self.seq_dir(frame) / "seg" / f"{frame.frame_id}{suffix}"
            if seg.is_file():
                bgr = cv2.imread(str(seg), cv2.IMREAD_COLOR)
                if bgr is None:
                    raise AssetError(f"cannot read mask {seg}")
                obj, hand = bgr[..., 1] > 127, bgr[..., 0] > 127
                return obj, hand
        return None, None

    # -- samples ---------------------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> HandObjectSample:  # type: ignore[override]
        if isinstance(index, slice):
            raise TypeError("HO3DDataset does not support slicing; index frames one at a time")
        frame = self.frames[index]
        where = str(self.meta_path(frame))
        record = self._json_records[index] if self._json_records is not None else None
        meta_file = self.meta_path(frame)
        meta = self._meta(frame) if record is None or meta_file.is_file() else {}
        K = _array(record["K"] if record is not None else meta.get("camMat"), (3, 3), "camMat", where)

        obj_name = str(meta.get("objName", record.get("objName", "") if record else ""))
        model = self.object_model(obj_name) if obj_name else None
        if meta.get("objRot") is not None and meta.get("objTrans") is not None:
            obj_R, obj_t = opengl_to_opencv_pose(meta["objRot"], meta["objTrans"])
        else:
            obj_R, obj_t = np.full((3, 3), np.nan), np.full(3, np.nan)
        cp3d = model.control_points if model is not None else np.full((21, 3), np.nan)
        if record is not None and "obj_p2ds" in record:
            cp2d = _array(record["obj_p2ds"], (21, 2), "obj_p2ds", where)
        else:
            cp2d = project(cp3d @ obj_R.T + obj_t, K)

        side = Side.RIGHT
        if record is not None:
            joints_mano = _array(record["joints_3d"], (21, 3), "joints_3d", where)  # already OpenCV
            params = _array(record["mano_params"], (58,), "mano_params", where)
            pose, shape = opengl_to_opencv_mano_pose(params[:48]), params[48:58]
            joints3d = joints_mano[list(MANO_TO_OUTPUT_ORDER)]
        elif meta.get("handJoints3D") is not None and np.size(meta["handJoints3D"]) == 63:
            joints_mano = _array(meta["handJoints3D"], (21, 3), "handJoints3D", where) @ OPENGL_TO_OPENCV
            joints3d = joints_mano[list(MANO_TO_OUTPUT_ORDER)]
            if meta.get("handPose") is not None and meta.get("handBeta") is not None:
                pose = opengl_to_opencv_mano_pose(_array(meta["handPose"], (48,), "handPose", where))
                shape = _array(meta["handBeta"], (10,), "handBeta", where)
            else:
                pose, shape = np.full(48, np.nan), np.full(10, np.nan)
        else:  # the evaluation split (or a frame without hand annotation): the wrist at most
            joints3d = np.full((21, 3), np.nan)
            if meta.get("handJoints3D") is not None:
                wrist = np.asarray(meta["handJoints3D"], dtype=np.float64).reshape(-1, 3)[0]
                joints3d[0] = OPENGL_TO_OPENCV @ wrist
            pose, shape = np.full(48, np.nan), np.full(10, np.nan)
        joints2d = project(joints3d, K)
        if meta.get("handBoundingBox") is not None:
            hand_box = _array(meta["handBoundingBox"], (4,), "handBoundingBox", where)
        else:
            hand_box = _tight_box(joints2d)

        image_path = self.image_path(frame)
        object_mask, hand_mask = self._masks(frame)
        return HandObjectSample(
            image_path=image_path,
            K=K,
            side=side,
            mano_pose=pose,
            mano_shape=shape,
            joints3d=joints3d,
            joints2d=joints2d,
            class_id=class_id_for_name(obj_name) if obj_name else "",
            object_name=obj_name,
            object_R=obj_R,
            object_t=obj_t,
            control_points3d=cp3d,
            control_points2d=cp2d,
            hand_box=hand_box,
            object_box=_tight_box(cp2d),
            object_mask=object_mask,
            hand_mask=hand_mask,
            hand_translation=joints3d[0].copy(),
            meta={
                "dataset": "ho3d",
                "split": self.split,
                "seq": frame.seq,
                "frame_id": frame.frame_id,
                "frame_key": frame.key,
                "image_suffix": image_path.suffix,
                "from_json": record is not None,
            },
        )


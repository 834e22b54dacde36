"""Reading MANO-format hand model pickles without chumpy or scipy, and without running any code from the file.

The official ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` are Python-2 pickles that contain chumpy objects and a
scipy sparse matrix. :func:`read_hand_model_pickle` reads them with the project's restricted unpickler
(:mod:`hfl_ros.safe_pickle`), its allow-list extended to let through only numpy arrays, the CSC matrix and
four chumpy node classes. Those are rebuilt as inert stand-ins that only keep their pickled state, and are
evaluated here into plain arrays. Checking the arrays against the MANO layout is
:func:`hfl_ros.model.mano.validate_hand_model`'s job.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from hfl_ros.errors import HandModelError
from hfl_ros.safe_pickle import NUMPY_GLOBALS, PickleRefused, RestrictedUnpickler

__all__ = ["read_hand_model_pickle"]

_MAX_DENSE_ENTRIES = 10_000_000  # a hand model's J_regressor has 16 × 778


# ---------------------------------------------------------------------------------------------------------
# Restricted unpickling
# ---------------------------------------------------------------------------------------------------------


class _PickledState:
    """An object rebuilt from a pickle without running its class's code: it only keeps the pickled state."""

    qualified_name = "?"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict | None):
            merged = dict(state[0] or {})
            merged.update(state[1] or {})
            state = merged
        if not isinstance(state, dict):
            raise HandModelError(f"{self.qualified_name} has a pickled state of type {type(state).__name__}")
        self.state = {str(k): v for k, v in state.items()}

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, "state", {}).get(key, default)

    def require(self, key: str) -> Any:
        state = getattr(self, "state", {})
        if key not in state:
            raise HandModelError(f"{self.qualified_name} object has no '{key}' in its pickled state")
        return state[key]


class _ChumpyNode(_PickledState):
    """Stand-in for a chumpy expression node."""


class _ChumpyCh(_ChumpyNode):
    qualified_name = "chumpy.ch.Ch"


class _ChumpySelect(_ChumpyNode):
    qualified_name = "chumpy.reordering.Select"


class _ChumpyTranspose(_ChumpyNode):
    qualified_name = "chumpy.reordering.transpose"


class _ChumpyReshape(_ChumpyNode):
    qualified_name = "chumpy.reordering.Reshape"


class _CscMatrix(_PickledState):
    """Stand-in for scipy's ``csc_matrix``: data, indices, indptr and shape are all we need."""

    qualified_name = "scipy.sparse.csc_matrix"


_STANDIN_CLASSES = (_ChumpyCh, _ChumpySelect, _ChumpyTranspose, _ChumpyReshape, _CscMatrix)


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """Safe replacement for ``copy_reg._reconstructor`` (protocol 0/1 pickles of plain new-style objects)."""
    if cls not in _STANDIN_CLASSES or base is not object or state is not None:
        raise HandModelError(f"refusing copy_reg._reconstructor({cls!r}, {base!r}, ...)")
    return cls.__new__(cls)


def _hand_model_globals() -> dict[tuple[str, str], Any]:
    """The numpy allow-list plus the chumpy and scipy stand-ins and what plain Python-2 objects need."""
    allowed: dict[tuple[str, str], Any] = {
        **NUMPY_GLOBALS,
        ("chumpy.ch", "Ch"): _ChumpyCh,
        ("chumpy.reordering", "Select"): _ChumpySelect,
        ("chumpy.reordering", "transpose"): _ChumpyTranspose,
        ("chumpy.reordering", "Reshape"): _ChumpyReshape,
        ("copy_reg", "_reconstructor"): _reconstructor,
        ("copyreg", "_reconstructor"): _reconstructor,
    }
    for module in ("scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse"):
        allowed[(module, "csc_matrix")] = _CscMatrix
    # Inert builtins that plain containers in a Python-2 pickle may reference.
    for module in ("__builtin__", "builtins"):
        for name, value in (("object", object), ("set", set), ("frozenset", frozenset), ("bytes", bytes)):
            allowed[(module, name)] = value
    return allowed


_HAND_MODEL_GLOBALS = _hand_model_globals()


class _HandModelUnpickler(RestrictedUnpickler):
    """Resolves only the globals in ``_HAND_MODEL_GLOBALS``; everything else raises HandModelError."""

    def __init__(self, file: io.BytesIO, source: Path):
        super().__init__(file, _HAND_MODEL_GLOBALS)
        self._source = source

    def refusal(self, module: str, name: str) -> HandModelError:
        if module == "chumpy" or module.startswith("chumpy."):
            return HandModelError(
                f"hand model file {self._source} contains a chumpy object of class {module}.{name}, which "
                "this loader does not evaluate (supported: chumpy.ch.Ch, chumpy.reordering.Select, "
                "chumpy.reordering.transpose, chumpy.reordering.Reshape)"
            )
        return HandModelError(
            f"hand model file {self._source} references {module}.{name}, which the restricted loader refuses "
            "(only numpy arrays, scipy CSC matrices and chumpy Ch/Select/transpose/Reshape are allowed)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise HandModelError(f"hand model file {self._source} uses persistent ids, which are refused")


# ---------------------------------------------------------------------------------------------------------
# Turning the stand-ins into arrays
# ---------------------------------------------------------------------------------------------------------


class _Evaluator:
    """Evaluates chumpy stand-ins recursively (memoised, cycle-safe) and densifies CSC matrices."""

    def __init__(self, source: Path):
        self._source = source
        self._memo: dict[int, np.ndarray] = {}
        self._active: set[int] = set()

    def value(self, obj: Any, key: str) -> Any:
        if isinstance(obj, _ChumpyNode):
            return self._node_value(obj, key)
        if isinstance(obj, _CscMatrix):
            return self._dense(obj, key)
        return obj

    def array(self, obj: Any, key: str, what: str) -> np.ndarray:
        value = self.value(obj, key)
        try:
            return np.asarray(value)
        except Exception as exc:
            raise self._error(key, f"{what} is not array-like ({type(value).__name__})") from exc

    def _error(self, key: str, message: str) -> HandModelError:
        return HandModelError(f"hand model file {self._source}: key '{key}': {message}")

    def _node_value(self, node: _ChumpyNode, key: str) -> np.ndarray:
        ident = id(node)
        if ident in self._memo:
            return self._memo[ident]
        if ident in self._active:
            raise self._error(key, f"{node.qualified_name} refers to itself")
        self._active.add(ident)
        try:
            result = self._evaluate_node(node, key)
        except HandModelError:
            raise
        except Exception as exc:  # bad indices, shapes or axes in the pickled state
            raise self._error(key, f"cannot evaluate {node.qualified_name}: {exc}") from exc
        finally:
            self._active.discard(ident)
        self._memo[ident] = result
        return result

    def _evaluate_node(self, node: _ChumpyNode, key: str) -> np.ndarray:
        name = node.qualified_name
        if isinstance(node, _ChumpyCh):
            return self.array(node.require("x"), key, f"{name}.x")
        base = self.array(node.require("a"), key, f"{name}.a")
        if isinstance(node, _ChumpySelect):
            idxs = self.array(node.require("idxs"), key, f"{name}.idxs")
            out = base.ravel()[idxs]
            shape = self.value(node.get("preferred_shape"), key)
            return out if shape is None else out.reshape(tuple(np.asarray(shape).ravel().tolist()))
        if isinstance(node, _ChumpyTranspose):
            axes = self.value(node.get("axes"), key)
            return np.transpose(base, None if axes is None else tuple(np.asarray(axes).ravel().tolist()))
        newshape = self.value(node.require("newshape"), key)
        return base.reshape(tuple(np.asarray(newshape).ravel().tolist()))

    def _dense(self, matrix: _CscMatrix, key: str) -> np.ndarray:
        shape = matrix.get("_shape", matrix.get("shape"))
        try:
            rows, cols = (int(n) for n in shape)
            data = np.asarray(self.value(matrix.require("data"), key), dtype=np.float64).ravel()
            indices = np.asarray(self.value(matrix.require("indices"), key), dtype=np.int64).ravel()
            indptr = np.asarray(self.value(matrix.require("indptr"), key), dtype=np.int64).ravel()
        except HandModelError:
            raise
        except Exception as exc:
            raise self._error(key, f"unreadable sparse matrix: {exc}") from exc
        if rows < 0 or cols < 0 or rows * cols > _MAX_DENSE_ENTRIES:
            raise self._error(key, f"sparse matrix of shape {(rows, cols)} is far too large for a hand model")
        if (
            indptr.size != cols + 1
            or indptr[0] != 0
            or np.any(np.diff(indptr) < 0)
            or indptr[-1] != data.size
            or indices.size != data.size
            or (indices.size and (indices.min() < 0 or indices.max() >= rows))
        ):
            raise self._error(key, f"inconsistent CSC matrix of shape {(rows, cols)}")
        dense = np.zeros((rows, cols), dtype=np.float64)
        columns = np.repeat(np.arange(cols), np.diff(indptr))
        np.add.at(dense, (indices, columns), data)  # duplicates add up, as in scipy
        return dense


def _read_pickle(path: Path) -> Any:
    if not path.is_file():
        raise HandModelError(f"hand model file {path} does not exist or is not a file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise HandModelError(f"hand model file {path} cannot be read: {exc}") from exc
    try:
        return _HandModelUnpickler(io.BytesIO(raw), path).load()
    except (HandModelError, PickleRefused) as exc:
        if isinstance(exc, HandModelError) and str(path) in str(exc):
            raise
        raise HandModelError(f"hand model file {path}: {exc}") from exc
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, ... from corrupt or truncated data
        raise HandModelError(
            f"hand model file {path} is not a readable MANO-format pickle (corrupt or truncated?): "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def read_hand_model_pickle(path: str | Path) -> dict[str, np.ndarray | str]:
    """The arrays and strings of a MANO-format pickle, not yet checked against the MANO layout (chumpy
    nodes evaluated, ``J_regressor`` dense).

    Raises HandModelError naming the file (and key) for a missing, corrupt or unsafe file.
    """
    path = Path(path)
    content = _read_pickle(path)
    if not isinstance(content, dict):
        raise HandModelError(f"hand model file {path} holds a {type(content).__name__}, expected a dict")
    evaluator = _Evaluator(path)
    arrays: dict[str, np.ndarray | str] = {}
    for key, raw_value in content.items():
        key = key.decode("latin1") if isinstance(key, bytes) else str(key)
        try:
            value = evaluator.value(raw_value, key)
        except HandModelError as exc:
            if str(path) in str(exc):
                raise
            raise HandModelError(f"hand model file {path}: key '{key}': {exc}") from exc
        if isinstance(value, bytes):
            value = value.decode("latin1")
        if isinstance(value, str | np.ndarray):
            arrays[key] = value
    return arrays

"""A restricted unpickler for annotation pickles that hold only plain Python values and numpy arrays."""

from __future__ import annotations

import codecs
import importlib
import pickle
from pathlib import Path

import numpy as np

from ..errors import AssetError

#: What a pickle of numpy arrays may import: (module, name), numpy modules under their old and new paths.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")]
    + [(m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")]
)


def _numpy_global(module: str, name: str):
    modern = module.replace("numpy.core", "numpy._core") if module.startswith("numpy.core") else module
    for candidate in (modern, module):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"cannot resolve {module}.{name}")


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Allows numpy array, scalar and dtype reconstruction and ``_codecs.encode`` (protocol-2 bytes); refuses
    every other import a pickle asks for, so loading cannot run arbitrary code."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an annotation pickle")
        if module == "_codecs":
            return codecs.encode
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        return _numpy_global(module, name)


def load_numpy_pickle(path: str | Path, what: str = "annotation pickle"):
    """Load a pickle of dicts, lists, strings, numbers and numpy arrays (Python 2 pickles included).

    Raises AssetError naming the file when it is missing, corrupt or asks to import anything else.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            return NumpyOnlyUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise AssetError(f"{what} not found: {path}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise AssetError(f"cannot read {what} {path}: {exc}") from None

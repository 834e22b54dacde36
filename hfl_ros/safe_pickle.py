"""The project's one restricted unpickler: a pickle may import only what an explicit allow-list maps it to.

:data:`NUMPY_GLOBALS` lets through numpy arrays, scalars and dtypes (under numpy's old and new module paths)
and the bytes encoding of protocol-2 pickles; :func:`load_numpy_pickle` reads annotation pickles with it.
Loaders of richer formats (the MANO hand model files) extend the allow-list with inert stand-in classes.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

import numpy as np

from hfl_ros.errors import AssetError

__all__ = ["NUMPY_GLOBALS", "PickleRefused", "RestrictedUnpickler", "latin1_encode", "load_numpy_pickle"]


class PickleRefused(pickle.UnpicklingError):
    """A pickle asked for something its allow-list does not permit."""


def latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Safe replacement for ``_codecs.encode``, which Python 3 protocol-2 pickles use for bytes objects."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise PickleRefused(f"refusing _codecs.encode of a {type(text).__name__} with encoding {encoding!r}")
    return text.encode("latin1")


def _numpy_globals() -> dict[tuple[str, str], Any]:
    # Taken from numpy's own reduce tuples, so they are the right objects for whichever numpy is installed.
    reconstruct = np.zeros(1).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5 pickles arrays through numpy's _frombuffer
    scalar = np.float64(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): latin1_encode,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return allowed


#: (module, name) -> object for pickles of plain Python values and numpy arrays.
NUMPY_GLOBALS: Mapping[tuple[str, str], Any] = MappingProxyType(_numpy_globals())


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves a pickle's imports only through ``allowed`` ((module, name) -> object), so loading cannot run
    code the allow-list does not name. Python 2 strings are decoded as latin-1 by default.

    Subclasses override :meth:`refusal` to word the error for their file format.
    """

    def __init__(self, file: IO[bytes], allowed: Mapping[tuple[str, str], Any], *, encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise self.refusal(module, name) from None

    def refusal(self, module: str, name: str) -> Exception:
        """The error raised when the pickle imports ``module.name``, which is not allowed."""
        return PickleRefused(f"refusing to load {module}.{name} from an annotation pickle")


def load_numpy_pickle(path: str | Path, what: str = "annotation pickle") -> Any:
    """Load a pickle of dicts, lists, strings, numbers and numpy arrays (Python 2 pickles included).

    Raises AssetError naming the file when it is missing, corrupt or asks to import anything else.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            return RestrictedUnpickler(f, NUMPY_GLOBALS).load()
    except FileNotFoundError:
        raise AssetError(f"{what} not found: {path}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise AssetError(f"cannot read {what} {path}: {exc}") from None

"""The numba switch of marginlab: whether kernels are compiled, and how they are specialised.

Every hot kernel of marginlab is written once, as a plain function decorated with
:func:`njit` (``numba.njit(cache=True)``: compiled on first use, the machine code cached on disk
next to the source or in numba's user cache directory). The same source runs as ordinary Python
when compilation is off:

* ``NUMBA_DISABLE_JIT=1`` (numba's own switch; the test suite runs the volatility tests once
  this way so that coverage sees the kernels' code), or
* ``MARGINLAB_DISABLE_NUMBA=1`` (marginlab's: the pricing module then also uses its vectorised
  NumPy path), or numba not installed.

:data:`NUMBA_ENABLED` is False in all three cases.

Specialised kernels
-------------------
A kernel that calls *pieces* chosen at run time (the variance update of one volatility process,
the log-density of one distribution, the objective of one optimisation problem) is written once
as a *template* whose pieces are global names, and :func:`specialise` makes one copy of it per
choice, with those names bound to the chosen kernels, compiled like any other. numba inlines the
pieces, so each copy is as fast as hand-written code. A closure over the pieces, or passing them
as arguments, would do the same but numba cannot cache either on disk (a closure's cell contents
and a dispatcher argument pickle differently in every process, so every run would compile again,
~30 s); a copy with its own globals and its own name is an ordinary function to numba's cache.
The name carries a digest of the source files of the template and of every piece, so editing a
piece recompiles the copies that inline it (numba itself only watches the template's file).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import types
from collections.abc import Callable

__all__ = ["NUMBA_ENABLED", "njit", "specialise"]

NUMBA_ENABLED = os.environ.get("MARGINLAB_DISABLE_NUMBA", "0") != "1"

try:  # pragma: no cover - import guard
    import numba
    from numba.core import config as _numba_config
except ImportError:  # pragma: no cover
    numba = None
    NUMBA_ENABLED = False
else:
    if _numba_config.DISABLE_JIT:
        NUMBA_ENABLED = False


def njit(*args, **kwargs):
    """``numba.njit`` when :data:`NUMBA_ENABLED`, else a decorator returning the function unchanged.

    Used as ``@njit(cache=True)`` (or ``njit(cache=True)(f)``), like numba's.
    """
    if NUMBA_ENABLED:
        return numba.njit(*args, **kwargs)
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda f: f


def _source_files(obj) -> frozenset[str]:
    """Source files a kernel's compiled code depends on (its own, and its pieces' if specialised)."""
    files = getattr(obj, "__source_files__", None)
    if files is not None:
        return files
    func = getattr(obj, "py_func", obj)
    try:
        return frozenset([inspect.getsourcefile(func)])
    except TypeError:  # a builtin or a constant
        return frozenset()


def _digest(files: frozenset[str]) -> str:
    h = hashlib.sha1()
    for path in sorted(files):
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:10]


def specialise(template: Callable, name: str, njit_options: dict | None = None, **pieces) -> Callable:
    """A compiled copy of ``template`` whose global names ``pieces`` refer to the given kernels.

    Parameters
    ----------
    template : function
        Plain Python source of the kernel; its pieces are module-level names it calls.
    name : str
        Distinguishes the copy (and its numba cache files), e.g. ``"garch_normal"``.
    njit_options : dict, optional
        Further options of ``numba.njit`` (e.g. ``{"inline": "always"}`` for a kernel called from one
        place only: numba then compiles it into its caller instead of on its own).
    **pieces
        Global name -> kernel (or constant) to bind in the copy.

    Returns
    -------
    The copy, compiled with ``njit(cache=True)`` when :data:`NUMBA_ENABLED` (else plain Python).
    It carries ``__source_files__`` so that copies built from it include those files in their digest.
    """
    glb = dict(template.__globals__)
    unknown = [k for k in pieces if k not in glb]
    if unknown:
        raise ValueError(f"specialise: {template.__name__} has no global name(s) {unknown}")
    glb.update(pieces)
    files = _source_files(template).union(*(_source_files(p) for p in pieces.values()))
    qualname = f"{template.__name__}__{name}__{_digest(files)}"
    func = types.FunctionType(template.__code__, glb, qualname, template.__defaults__)
    func.__qualname__ = qualname
    func.__module__ = template.__module__
    func.__doc__ = template.__doc__
    kernel = njit(cache=True, **(njit_options or {}))(func)
    kernel.__source_files__ = files
    return kernel

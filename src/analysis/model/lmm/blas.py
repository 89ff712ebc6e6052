"""One BLAS thread while the engine runs.

The engine's BLAS calls are many mid-sized products over per-client blocks ((G q) x p times p x p, a few
milliseconds each), separated by numpy work. OpenBLAS's worker threads gain little on them and, on a busy
machine, cost a great deal: at 20,000 clients on a loaded 2-core machine a fit took 4.0 s with OpenBLAS's
default two threads and 0.9 s with one (benchmarks/bench_fit.py). One thread also makes the products'
rounding independent of the number of cores. lme4 (R's reference BLAS) is single-threaded as well.

:func:`single_thread` sets the thread count of every OpenBLAS loaded in the process (numpy's and scipy's
bundled copies, found in ``/proc/self/maps``, as threadpoolctl does) to 1 and restores it afterwards; where
none is found (another BLAS, another OS) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_NAMES = [  # (get, set) symbol pairs of OpenBLAS builds: scipy-openblas (64-bit ints, 32-bit ints), plain
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
]


@functools.cache
def _controls() -> tuple[tuple[Callable[[], int], Callable[[int], None]], ...]:
    """(get, set) of each OpenBLAS mapped into this process."""
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in os.path.basename(line.split()[-1]).lower()}
    except (OSError, IndexError):
        return ()
    found = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)
        except OSError:
            continue
        for get_name, set_name in _NAMES:
            get, set_ = getattr(lib, get_name, None), getattr(lib, set_name, None)
            if get is not None and set_ is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                set_.restype, set_.argtypes = None, [ctypes.c_int]
                found.append((get, set_))
                break
    return tuple(found)


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with one OpenBLAS thread; the previous counts are restored on exit."""
    controls = _controls()
    before = [get() for get, _ in controls]
    try:
        for _, set_ in controls:
            set_(1)
        yield
    finally:
        for (_, set_), n in zip(controls, before, strict=True):
            set_(n)


def single_threaded(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator: ``fn`` runs inside :func:`single_thread`."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with single_thread():
            return fn(*args, **kwargs)

    return wrapper

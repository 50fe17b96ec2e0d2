"""Two small tools for using every CPU core from NumPy (the CuPy path needs neither).

`for_blocks(fn, n)` runs fn(slice) on contiguous blocks of range(n) in a thread pool. NumPy
releases the GIL inside its loops, so element-wise work on large arrays (pooling, bias adds)
runs on all cores instead of one.

`single_threaded_blas()` is a context in which BLAS uses one thread. The FFT convolution makes
thousands of tiny GEMMs (one per frequency) next to pocketfft's own worker threads; OpenBLAS's
threads busy-wait after each call and steal those workers' cores (measured: conv1 forward 425 ms
with two BLAS threads, 308 ms with one). Inside the context we split the tiny GEMMs over our
own threads instead.
"""
import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# the cores this process may run on (all of them, unless a launcher such as mpiexec -bind-to binds it)
N_THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
MIN_BLOCK_ELEMENTS = 1 << 16  # below this, threading costs more than it saves
_pool = ThreadPoolExecutor(max_workers=N_THREADS) if N_THREADS > 1 else None
_controller = None


def blocks(n, parts=N_THREADS):
    """Contiguous slices covering range(n), at most `parts` of them."""
    parts = max(1, min(parts, n))
    bounds = np.linspace(0, n, parts + 1).astype(int)
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def for_blocks(fn, n, size=None, xp=np):
    """fn(slice) for blocks of range(n), in parallel for NumPy arrays larger than a threshold
    (size: the number of elements touched, to decide; CuPy always runs one call)."""
    if _pool is None or xp is not np or (size is not None and size < MIN_BLOCK_ELEMENTS) or n < 2:
        fn(slice(0, n))
        return
    for future in [_pool.submit(fn, s) for s in blocks(n)]:
        future.result()


@contextlib.contextmanager
def single_threaded_blas(xp=np):
    """BLAS limited to one thread in this block (a no-op without threadpoolctl or on CuPy)."""
    global _controller
    if xp is not np or N_THREADS == 1:
        yield
        return
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
            _controller = ThreadpoolController()
        except ImportError:
            _controller = False
    if not _controller:
        yield
        return
    with _controller.limit(limits=1, user_api="blas"):
        yield

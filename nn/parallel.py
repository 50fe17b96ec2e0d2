"""The one decision on CPU threads, and two tools for using them from NumPy (the CuPy path needs none).

Threads. `decide(cores, sharing_ranks, env)` is the number of threads of this process: the
STRUCTNET_THREADS environment variable when set, else the cores this process may run on
(sched_getaffinity) divided among the MPI ranks of the node that share them (ranks bound to
disjoint cores share nothing), so ranks x threads never exceeds the cores. That one number sets
the BLAS threads (threadpoolctl; never above the library's own setting, OPENBLAS_NUM_THREADS say,
unless STRUCTNET_THREADS asks), the
scipy.fft workers (`fft_workers()`) and the thread pool. Without a launcher there is one rank;
under one, the launcher's local-size variable is the guess until nn.comm's MPIComm counts the
ranks of the node (MPI's COMM_TYPE_SHARED) and calls `configure`. `describe()` is one line of it.

`for_blocks(fn, n)` runs fn(slice) on contiguous blocks of range(n) in the thread pool. NumPy
releases the GIL inside its loops, so element-wise work on large arrays (pooling, bias adds)
runs on all the threads instead of one.

`single_threaded_blas()` is a context in which BLAS uses one thread. The FFT convolution makes
thousands of tiny GEMMs (one per frequency) next to pocketfft's own worker threads; OpenBLAS's
threads busy-wait after each call and steal those workers' cores (measured: conv1 forward 425 ms
with two BLAS threads, 308 ms with one). Inside the context we split the tiny GEMMs over our
own threads instead.
"""
import contextlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

THREADS_VAR = "STRUCTNET_THREADS"
# launchers' count of the ranks on this node (Open MPI, MPICH/Hydra, MVAPICH), before MPI is set up
LOCAL_SIZE_VARS = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_LOCAL_SIZE")
MIN_BLOCK_ELEMENTS = 1 << 16  # below this, threading costs more than it saves

_worker = threading.local()   # .inside: this thread is running a for_blocks task
_state = {"threads": None, "cores": None, "sharing": 1, "pool": None, "controller": None, "blas_ceiling": {}}


def available_cores():
    """The number of cores this process may run on (its CPU affinity)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def decide(cores, sharing_ranks=1, env=None):
    """Threads per process (>= 1): env[STRUCTNET_THREADS] when it is a positive integer, else
    max(1, cores // sharing_ranks). env: a mapping (default os.environ)."""
    env = os.environ if env is None else env
    text = env.get(THREADS_VAR, "").strip()
    if text:
        if text.isdigit() and int(text) > 0:
            return int(text)
        print(f"warning: {THREADS_VAR}={text!r} is not a positive integer; ignored", file=sys.stderr)
    return max(1, int(cores) // max(1, int(sharing_ranks)))


def sharing_ranks(mine, node):
    """How many of the node's ranks share this process's cores: mine, a set of core ids, and
    node, every node rank's set (this one's included); all of them when affinity is unknown."""
    return max(1, sum(1 for cores in node if not mine or not cores or cores & mine))


def launcher_local_size(env=None):
    """Ranks on this node as the launcher announces them (1 without a launcher or a variable)."""
    env = os.environ if env is None else env
    for var in LOCAL_SIZE_VARS:
        if env.get(var, "").isdigit() and int(env[var]) > 0:
            return int(env[var])
    return 1


def _blas_controller():
    if _state["controller"] is None:
        try:
            from threadpoolctl import ThreadpoolController
            _state["controller"] = ThreadpoolController()
        except ImportError:
            _state["controller"] = False
    return _state["controller"]


def configure(sharing_ranks=None):
    """(Re)make the decision for `sharing_ranks` ranks sharing this process's cores (None: the
    launcher's guess) and apply it: BLAS threads, FFT workers, thread pool. Returns the threads."""
    sharing = launcher_local_size() if sharing_ranks is None else max(1, int(sharing_ranks))
    cores = available_cores()
    n = decide(cores, sharing)
    old = _state["pool"]
    if old is not None and (_state["threads"] != n):
        old.shutdown(wait=True)
        old = None
    _state.update(threads=n, cores=cores, sharing=sharing,
                  pool=old if old is not None else (ThreadPoolExecutor(max_workers=n) if n > 1 else None))
    controller = _blas_controller()
    if controller:
        forced = bool(os.environ.get(THREADS_VAR, "").strip())
        for lib in controller.select(user_api="blas").lib_controllers:
            # the library's own setting (its default, or OPENBLAS_NUM_THREADS) is the ceiling
            ceiling = _state["blas_ceiling"].setdefault(lib.filepath, lib.num_threads)
            lib.set_num_threads(n if forced else min(n, ceiling))
    return n


def threads():
    """This process's number of threads (the decision, made on first use)."""
    if _state["threads"] is None:
        configure()
    return _state["threads"]


def fft_workers():
    """scipy.fft's `workers` for this process."""
    return threads()


def blas_threads():
    """(BLAS library name, its threads) as threadpoolctl reports them; ("none", 0) without it."""
    threads()
    controller = _blas_controller()
    libs = controller.select(user_api="blas").lib_controllers if controller else []
    if not libs:
        return "none", 0
    return "+".join(sorted({lib.internal_api for lib in libs})), max(lib.num_threads for lib in libs)


def describe():
    """One line: cores, ranks sharing them, and the threads of BLAS, FFT and the pool."""
    n = threads()
    name, blas = blas_threads()
    ranks = _state["sharing"]
    def count(k, what):
        return f"{k} {what}{'s' if k != 1 else ''}"
    return (f"{count(_state['cores'], 'core')} available, shared by {count(ranks, 'rank')}: "
            f"{count(n, 'thread')} per rank{' (' + THREADS_VAR + ')' if os.environ.get(THREADS_VAR) else ''}; "
            f"BLAS {name} {count(blas, 'thread')} (1 inside FFT GEMM blocks); FFT workers {fft_workers()}; "
            f"thread pool {n if _state['pool'] is not None else 'off'}")


def blocks(n, parts=None):
    """Contiguous slices covering range(n), at most `parts` (default: threads()) of them."""
    parts = max(1, min(threads() if parts is None else parts, n))
    bounds = np.linspace(0, n, parts + 1).astype(int)
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def for_blocks(fn, n, size=None, xp=np):
    """fn(slice) for blocks of range(n), in parallel for NumPy arrays larger than a threshold
    (size: the number of elements touched, to decide; CuPy always runs one call)."""
    threads()
    pool = _state["pool"]
    if (pool is None or xp is not np or (size is not None and size < MIN_BLOCK_ELEMENTS) or n < 2
            or getattr(_worker, "inside", False)):   # from inside a pool task: inline (never waits on itself)
        fn(slice(0, n))
        return
    for future in [pool.submit(_as_worker, fn, s) for s in blocks(n)]:
        future.result()


def _as_worker(fn, s):
    _worker.inside = True
    try:
        fn(s)
    finally:
        _worker.inside = False


@contextlib.contextmanager
def single_threaded_blas(xp=np):
    """BLAS limited to one thread in this block (a no-op without threadpoolctl or on CuPy)."""
    controller = _blas_controller() if xp is np and threads() > 1 else False
    if not controller:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield


configure()     # at import, before any BLAS call of the project: no oversubscription by default

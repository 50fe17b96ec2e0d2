"""Array-module dispatch: the only module of the project that imports CuPy.

The CPU path never needs CuPy. When CuPy imports and a CUDA device answers, `available` is True
and model code runs unchanged on CuPy arrays through `get_array_module`.

Dtype policy: training runs in float32 (`DEFAULT_DTYPE`); every layer also accepts float64, which
the finite-difference gradient checks use. Integer or other float types are rejected by
`check_float`.
"""
import numpy as np

try:  # guarded: a missing or broken CuPy disables the GPU path, nothing else
    import cupy as _cupy
    try:
        available = _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # CuPy installed but no driver/device: the CPU path still works
        available = False
    import_error = None
except ImportError as err:
    _cupy = None
    available = False
    import_error = err

DEFAULT_DTYPE = np.float32
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class GPUUnavailable(RuntimeError):
    """The GPU path was asked for where CuPy or a CUDA device is missing."""


def cupy():
    """The CuPy module; a clear error (GPUUnavailable) when the GPU path is unavailable."""
    if not available:
        why = f"CuPy import failed ({import_error})" if _cupy is None else "no CUDA device found"
        raise GPUUnavailable(f"the GPU path is unavailable: {why}; install the 'gpu' extra "
                           "(pip install -e .[gpu]) on a machine with an NVIDIA GPU")
    return _cupy


def get_array_module(*arrays):
    """`numpy` or `cupy`, whichever owns the arrays (numpy for plain Python values)."""
    if _cupy is not None:
        return _cupy.get_array_module(*arrays)
    return np


def is_gpu_array(x):
    return _cupy is not None and isinstance(x, _cupy.ndarray)


def to_device(x, device):
    """Move an array to 'cpu' (NumPy) or 'gpu' (CuPy); a no-op when it is already there."""
    if device == "cpu":
        return to_numpy(x)
    if device == "gpu":
        return cupy().asarray(x)
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'gpu'")


def empty_pinned(shape, dtype):
    """A NumPy array in page-locked host memory (CuPy's pinned pool), so that a copy to the
    device is a DMA that does not hold the host thread."""
    import cupyx
    cupy()  # the clear error when the GPU path is unavailable
    return cupyx.empty_pinned(shape, dtype=dtype)


def use_device(index):
    """Make CUDA device `index` (modulo the devices present) current for this process: one GPU per
    rank (nn.comm, by local rank). Returns the device number used."""
    n = cupy().cuda.runtime.getDeviceCount()
    cupy().cuda.Device(index % n).use()
    return index % n


def nccl():
    """CuPy's NCCL binding (cupy.cuda.nccl) when it is usable, else None (nn.comm then reduces
    through MPI on host copies)."""
    if _cupy is None:
        return None
    try:
        from cupy.cuda import nccl as module
    except ImportError:
        return None
    usable = getattr(module, "available", True) and hasattr(module, "NcclCommunicator")
    return module if usable else None


def current_stream_ptr():
    """The raw handle of CuPy's current stream (for NCCL calls)."""
    return cupy().cuda.get_current_stream().ptr


def synchronize():
    """Wait for the current CUDA device's work (a no-op without CuPy)."""
    if _cupy is not None:
        _cupy.cuda.Device().synchronize()


def to_numpy(x):
    """A NumPy array (copying from the device when x is a CuPy array)."""
    if is_gpu_array(x):
        return x.get()
    return np.asarray(x)


def check_float(x, name):
    """Reject arrays that are not float32/float64, naming the argument."""
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a float32 or float64 array, got {x.dtype}")


def result_float_dtype(*arrays):
    """The float type of a computation on these arrays: float32 or float64 as NumPy promotes them,
    float64 for anything else (integers, float16)."""
    dtype = np.result_type(*[a.dtype for a in arrays])
    return dtype if dtype in FLOAT_DTYPES else np.dtype(np.float64)


def fft_module(xp):
    """(module, extra kwargs) for real 2-D FFTs: scipy.fft with nn.parallel's workers, or cupyx.scipy.fft."""
    if xp is np:
        import scipy.fft

        from .parallel import fft_workers
        return scipy.fft, {"workers": fft_workers()}
    import cupyx.scipy.fft
    return cupyx.scipy.fft, {}


def keep_freed_memory():
    """Ask glibc to keep freed memory for reuse rather than return it to the OS (process-wide).

    A training step allocates and frees arrays of hundreds of MB. Returned to the OS, each comes
    back as page faults that zero it again: at the paper's sizes we measured 120,000 minor faults
    and 1.6 s of kernel time per pre-training step, against 2,300 and 0.02 s with this setting (step
    2.0 s -> 1.1 s). The price is that the process keeps its peak memory. The scripts call this;
    a library import never changes the allocator. Returns True when applied (glibc only)."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))

"""The project's CUDA kernels: sources in nn/kernels/*.cu, compiled once per device and dtype.

Every kernel is a C++ template `template <typename T> __global__ void name(...)` over the float
type T, instantiated for float and double (float64 is what the gradient checks use). `launch`
is the one way to call them. It reads each kernel's parameter list from its source, converts
Python scalars to the C types (CuPy passes numpy scalars by their own type, so an `int`
parameter must get an int32) and rejects arrays of the wrong dtype or layout, which on a GPU
would silently give garbage.

On CuPy arrays the kernels run on the device through `cupy.RawModule` (NVRTC), memoized per
(file, device). On NumPy arrays they run through `nn.kernels.emulate`, which compiles the same
source for the CPU with a C++ compiler and loops over the grid. That is for the tests: it
checks the kernels' index arithmetic and the launchers where no GPU is available. The CPU path of
the project never calls it.
"""
import functools
import re
from pathlib import Path

import numpy as np

from .. import backend

KERNEL_DIR = Path(__file__).resolve().parent
THREADS_PER_BLOCK = 256
MAX_BLOCKS = 1 << 16  # grid-stride loops cover the rest
FLOAT_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

_SIGNATURE = re.compile(r"template\s*<\s*typename\s+T\s*>\s*__global__\s+void\s+(\w+)\s*\(([^)]*)\)", re.S)


class Param:
    """One kernel parameter as read from the source: `const T* __restrict__ x` -> ctype 'T', pointer."""

    def __init__(self, text):
        words = text.replace("*", " * ").replace("__restrict__", " ").split()
        self.name = words[-1]
        self.pointer = "*" in words
        self.ctype = " ".join(w for w in words[:-1] if w not in ("const", "*"))
        self.text = " ".join(w for w in words[:-1])  # the C type, T unresolved: 'const T *'

    def dtype(self, float_dtype):
        """numpy dtype of this parameter (of its elements for a pointer)."""
        if self.ctype == "T":
            return np.dtype(float_dtype)
        return np.dtype({"int": np.int32, "long long": np.int64, "unsigned char": np.uint8,
                         "float": np.float32, "double": np.float64}[self.ctype])


@functools.lru_cache(maxsize=None)
def source(file):
    """Text of nn/kernels/<file>."""
    return (KERNEL_DIR / file).read_text()


@functools.lru_cache(maxsize=None)
def signatures(file):
    """{kernel name: [Param, ...]} of the templated kernels in nn/kernels/<file>."""
    found = {name: [Param(p) for p in params.split(",") if p.strip()] for name, params in _SIGNATURE.findall(source(file))}
    if not found:
        raise ValueError(f"nn/kernels/{file}: no 'template <typename T> __global__ void' kernels found")
    return found


def instantiations(file):
    """The template instances compiled for every kernel of a file: 'name<float>', 'name<double>'."""
    return [f"{name}<{t}>" for name in signatures(file) for t in FLOAT_TYPES.values()]


@functools.lru_cache(maxsize=None)
def _device_module(file, device_id):
    cp = backend.cupy()
    with cp.cuda.Device(device_id):
        return cp.RawModule(code=source(file), options=("-std=c++14",), name_expressions=instantiations(file))


def _device_kernel(file, name, dtype):
    cp = backend.cupy()
    module = _device_module(file, cp.cuda.Device().id)
    return module.get_function(f"{name}<{FLOAT_TYPES[np.dtype(dtype)]}>")


def grid_for(total, threads=THREADS_PER_BLOCK):
    """Blocks for a grid-stride loop over `total` elements."""
    return max(1, min(MAX_BLOCKS, -(-int(total) // threads)))


def launch(file, name, dtype, grid, block, *args):
    """Run kernel `name` of nn/kernels/<file> instantiated for the float `dtype`.

    grid, block: tuples (x[, y[, z]]). args follow the kernel's parameter list: arrays for
    pointers (C-contiguous, of the parameter's dtype, all CuPy or all NumPy), Python numbers for
    scalars. NumPy arrays run the CPU emulation (tests only).
    """
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_TYPES:
        raise TypeError(f"kernel {name}: float type must be float32 or float64, got {dtype}")
    params = signatures(file)[name]
    if len(args) != len(params):
        raise TypeError(f"kernel {name}: expected {len(params)} arguments ({', '.join(p.name for p in params)}), "
                        f"got {len(args)}")
    arrays = [a for a, p in zip(args, params) if p.pointer]
    on_gpu = backend.is_gpu_array(arrays[0]) if arrays else False
    converted = []
    for a, p in zip(args, params):
        want = p.dtype(dtype)
        if p.pointer:
            if backend.is_gpu_array(a) != on_gpu or not hasattr(a, "dtype"):
                raise TypeError(f"kernel {name}: argument {p.name} must be a {'CuPy' if on_gpu else 'NumPy'} array")
            if a.dtype != want or not a.flags.c_contiguous:
                raise TypeError(f"kernel {name}: argument {p.name} must be a C-contiguous {want} array, "
                                f"got {a.dtype}{'' if a.flags.c_contiguous else ' (not contiguous)'}")
            converted.append(a)
        else:
            converted.append(want.type(a))
    if on_gpu:
        _device_kernel(file, name, dtype)(tuple(grid), tuple(block), tuple(converted))
    else:
        from . import emulate
        emulate.kernel(file, name, dtype)(tuple(grid), tuple(block), tuple(converted))

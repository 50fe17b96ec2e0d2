"""Loader and launcher of CUDA kernel sources: any package keeps its own .cu files and names
them by path (nn's are in nn/kernels/*.cu), compiled once per file, device and dtype.

Every kernel is a C++ template `template <typename T> __global__ void name(...)` over the float
type T, instantiated for float and double (float64 is what the gradient checks use). `launch`
is the one way to call them. It reads each kernel's parameter list from its source, converts
Python scalars to the C types (CuPy passes numpy scalars by their own type, so an `int`
parameter must get an int32) and rejects arrays of the wrong dtype or layout, which on a GPU
would silently give garbage.

On CuPy arrays the kernels run on the device through `cupy.RawModule` (NVRTC), memoized per
(path, device). On NumPy arrays they run through `nn.kernels.emulate`, which compiles the same
source for the CPU with a C++ compiler and loops over the grid. That is for the tests: it
checks the kernels' index arithmetic and the launchers where no GPU is available. The CPU path of
the project never calls it.
"""
import functools
import re
from pathlib import Path

import numpy as np

from .. import backend

KERNEL_DIR = Path(__file__).resolve().parent  # nn's own sources
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
def source(path):
    """Text of the kernel source file at `path` (a pathlib.Path)."""
    return Path(path).read_text()


@functools.lru_cache(maxsize=None)
def parse_signatures(code):
    """{kernel name: [Param, ...]} of the templated kernels in the source text `code`."""
    return {name: [Param(p) for p in params.split(",") if p.strip()] for name, params in _SIGNATURE.findall(code)}


def signatures(path):
    """{kernel name: [Param, ...]} of the templated kernels in the source file at `path`."""
    found = parse_signatures(source(path))
    if not found:
        raise ValueError(f"{path}: no 'template <typename T> __global__ void' kernels found")
    return found


def instantiations(path):
    """The template instances compiled for every kernel of a file: 'name<float>', 'name<double>'."""
    return [f"{name}<{t}>" for name in signatures(path) for t in FLOAT_TYPES.values()]


@functools.lru_cache(maxsize=None)
def _device_module(path, device_id):
    cp = backend.cupy()
    with cp.cuda.Device(device_id):
        return cp.RawModule(code=source(path), options=("-std=c++14",), name_expressions=instantiations(path))


def _device_kernel(path, name, dtype):
    cp = backend.cupy()
    module = _device_module(path, cp.cuda.Device().id)
    return module.get_function(f"{name}<{FLOAT_TYPES[np.dtype(dtype)]}>")


def grid_for(total, threads=THREADS_PER_BLOCK):
    """Blocks for a grid-stride loop over `total` elements."""
    return max(1, min(MAX_BLOCKS, -(-int(total) // threads)))


def launch(path, name, dtype, grid, block, *args):
    """Run kernel `name` of the source file at `path` instantiated for the float `dtype`.

    grid, block: tuples (x[, y[, z]]). args follow the kernel's parameter list: arrays for
    pointers (C-contiguous, of the parameter's dtype, all CuPy or all NumPy), Python numbers for
    scalars. NumPy arrays run the CPU emulation (tests only).
    """
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_TYPES:
        raise TypeError(f"kernel {name}: float type must be float32 or float64, got {dtype}")
    params = signatures(path)[name]
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
        _device_kernel(path, name, dtype)(tuple(grid), tuple(block), tuple(converted))
    else:
        from . import emulate
        emulate.kernel(source(path), name, dtype)(tuple(grid), tuple(block), tuple(converted))

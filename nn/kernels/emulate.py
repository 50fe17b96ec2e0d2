"""Run CUDA kernel sources (see nn.kernels) on the CPU, for tests on machines without a GPU.

The same source is compiled by the host C++ compiler with a small shim: `__global__` and
`__device__` vanish, and threadIdx / blockIdx / blockDim / gridDim become globals that a
generated wrapper sets while it loops over every block and thread of the launch, one after
another. That is exact for kernels in which each thread writes only its own outputs and
nothing waits on another thread (no shared memory, no __syncthreads, no atomics): the rule all
kernels of this project follow. It checks their index arithmetic, bounds and tie-breaking, and
the Python launchers' grids, argument order and dtypes, against the NumPy reference. It says
nothing about speed or about CUDA's compiler: the GPU parity tests (marked gpu) do that.
"""
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile

import numpy as np

from . import FLOAT_TYPES, parse_signatures

SHIM = """
#include <cmath>
struct EmulatedDim3 { unsigned int x, y, z; };
static EmulatedDim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
"""

_CTYPES = {np.dtype(np.int32): ctypes.c_int32, np.dtype(np.int64): ctypes.c_int64,
           np.dtype(np.uint8): ctypes.c_uint8, np.dtype(np.float32): ctypes.c_float,
           np.dtype(np.float64): ctypes.c_double}


def compiler():
    """The host C++ compiler, or None."""
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


def _wrappers(code):
    """C++ wrappers emulated_<kernel>_<type>(dims[6], args[]) that run a whole launch serially."""
    out = []
    for name, params in parse_signatures(code).items():
        for t in FLOAT_TYPES.values():
            call = ", ".join(f"*reinterpret_cast<{p.text.replace('T', t) if p.ctype == 'T' else p.text} *>(args[{i}])"
                             for i, p in enumerate(params))
            out.append(f"""
extern "C" void emulated_{name}_{t}(const unsigned int* dims, void** args)
{{
    gridDim = {{dims[0], dims[1], dims[2]}};
    blockDim = {{dims[3], dims[4], dims[5]}};
    for (unsigned int bz = 0; bz < dims[2]; ++bz) for (unsigned int by = 0; by < dims[1]; ++by)
    for (unsigned int bx = 0; bx < dims[0]; ++bx) for (unsigned int tz = 0; tz < dims[5]; ++tz)
    for (unsigned int ty = 0; ty < dims[4]; ++ty) for (unsigned int tx = 0; tx < dims[3]; ++tx) {{
        blockIdx = {{bx, by, bz}};
        threadIdx = {{tx, ty, tz}};
        {name}<{t}>({call});
    }}
}}""")
    return "\n".join(out)


@functools.lru_cache(maxsize=None)
def library(code):
    """The CPU build of the kernel source text `code` (cached on disk by the hash of its code)."""
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("kernel emulation needs a C++ compiler (g++, c++ or clang++; or set CXX)")
    full = SHIM + code + _wrappers(code)
    digest = hashlib.sha256((cxx + full).encode()).hexdigest()[:16]
    cache = os.path.join(tempfile.gettempdir(), f"nn_kernel_emulation_{os.getuid()}")
    os.makedirs(cache, exist_ok=True)
    lib = os.path.join(cache, f"kernels_{digest}.so")
    if not os.path.exists(lib):
        src = lib[:-3] + ".cpp"
        with open(src, "w") as f:
            f.write(full)
        tmp = f"{lib}.{os.getpid()}.tmp"
        done = subprocess.run([cxx, "-std=c++14", "-O2", "-shared", "-fPIC", "-x", "c++", src, "-o", tmp],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{src}: the C++ compiler rejected the emulated source:\n{done.stderr}")
        os.replace(tmp, lib)
    return ctypes.CDLL(lib)


def kernel(code, name, dtype):
    """Kernel `name` of the source text `code` for the float `dtype`: a callable with RawKernel's
    convention, k(grid, block, args), running on NumPy arrays."""
    fn = getattr(library(code), f"emulated_{name}_{FLOAT_TYPES[np.dtype(dtype)]}")
    fn.restype = None

    def run(grid, block, args):
        dims = (ctypes.c_uint * 6)(*(tuple(grid) + (1,) * (3 - len(grid)) + tuple(block) + (1,) * (3 - len(block))))
        values = [ctypes.c_void_p(a.ctypes.data) if isinstance(a, np.ndarray) else _CTYPES[np.dtype(type(a))](a)
                  for a in args]
        pointers = (ctypes.c_void_p * len(values))(*[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values])
        fn(dims, pointers)
    return run

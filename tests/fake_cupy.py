"""A stand-in for CuPy built on NumPy, to check the GPU path's host/device discipline without a GPU.

It is not a GPU and proves nothing about speed or CUDA. What it checks is the class of bugs that
only show on a device: a device array handed to NumPy (`np.asarray`, implicit conversion), host
and device arrays mixed in one operation, a result left on the device where the host needs it,
and the kernel launches (the RawModule it returns runs the same .cu source through
nn.kernels.emulate). The rules follow CuPy's documented behaviour:
  * device arrays refuse implicit conversion to NumPy (`__array__` raises TypeError; use .get());
  * operators and module functions refuse NumPy arrays mixed with device arrays (Python and
    NumPy scalars are fine), except asarray/array/asnumpy, which move data;
  * float(), int() and bool() of a one-element device array are allowed (they synchronise);
  * indexing a device array with a NumPy integer array is allowed (CuPy copies the index over).

    with installed():          # patches nn.backend and sys.modules['cupy'] / ['cupyx']
        ...                    # code under test, e.g. Trainer(cfg with device="gpu")
"""
import contextlib
import sys
import types

import numpy as np
import scipy.fft


class FakeDeviceArray:
    """A 'device' array: a NumPy array that refuses to meet NumPy arrays."""
    __slots__ = ("_a",)
    __array_priority__ = 1000

    def __init__(self, a):
        self._a = a

    # -- conversions -------------------------------------------------------------------------
    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct "
                        "a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _call(getattr(ufunc, method), inputs, kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        return _call(func, args, kwargs)

    def get(self, stream=None, out=None):
        return self._a.copy()

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __bool__(self):
        return bool(self._a)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(v) for v in self._a)

    def __repr__(self):
        return f"FakeDeviceArray({self._a!r})"

    # -- indexing ----------------------------------------------------------------------------
    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        self._a[_index(key)] = _unwrap(value, allow_host=True)  # CuPy accepts host values here

    # -- attributes and methods --------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: _wrap(self._a.T))
    real = property(lambda self: _wrap(self._a.real))
    imag = property(lambda self: _wrap(self._a.imag))

    def __getattr__(self, name):
        if name.startswith("__"):  # never __array_interface__ & co.: NumPy would read the data through them
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)
        return lambda *args, **kwargs: _call(attr, args, kwargs)


def _binary(name):
    def op(self, other):
        return _call(getattr(self._a, name), (other,), {})
    op.__name__ = name
    return op


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
              "lshift", "rshift"):
    for _form in ("__%s__", "__r%s__", "__i%s__"):
        setattr(FakeDeviceArray, _form % _name, _binary(_form % _name))
for _name in ("lt", "le", "eq", "ne", "gt", "ge"):
    setattr(FakeDeviceArray, f"__{_name}__", _binary(f"__{_name}__"))
for _name in ("neg", "pos", "abs", "invert"):
    setattr(FakeDeviceArray, f"__{_name}__", (lambda n: lambda self: _wrap(getattr(self._a, n)()))(f"__{_name}__"))
FakeDeviceArray.__hash__ = None


def _is_host_array(x):
    return isinstance(x, np.ndarray) and x.ndim > 0


def _wrap(x):
    if isinstance(x, np.ndarray):
        return FakeDeviceArray(x)
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _unwrap(x, allow_host):
    if isinstance(x, FakeDeviceArray):
        return x._a
    if _is_host_array(x) and not allow_host:
        raise TypeError(f"Unsupported type {type(x)}: a NumPy array met a device array (move it with cupy.asarray)")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, allow_host) for v in x)
    return x


def _index(key):
    """Device arrays, NumPy integer/bool arrays, slices and integers are all valid indices."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, FakeDeviceArray):
        return key._a
    return key


def _call(fn, args, kwargs, allow_host=False):
    args = _unwrap(list(args), allow_host)
    kwargs = {k: _unwrap(v, allow_host) for k, v in kwargs.items()}
    return _wrap(fn(*args, **kwargs))


# ---- the module ----------------------------------------------------------------------------------
class _Event:
    def record(self, stream=None):
        pass

    def synchronize(self):
        pass


class _Device:
    def __init__(self, device_id=0):
        self.id = device_id
        self.compute_capability = "90"

    def synchronize(self):
        pass

    def use(self):      # one device per MPI rank (nn.backend.use_device)
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _RawModule:
    """Runs the kernels of the CUDA source it is given through nn.kernels.emulate."""

    def __init__(self, code, options=(), name_expressions=None, **kwargs):
        self.code = code

    def get_function(self, expression):
        from nn.kernels import emulate
        name, ctype = expression[:-1].split("<")
        dtype = {"float": np.float32, "double": np.float64}[ctype]
        run = emulate.kernel(self.code, name, dtype)

        def launch(grid, block, args):
            run(grid, block, tuple(a._a if isinstance(a, FakeDeviceArray) else a for a in args))
        return launch


class _ElementwiseKernel:
    """The project's two element-wise kernels, by name (their C bodies are in nn/kernels/ops.py)."""
    BODIES = {"relu_backward": lambda gy, y: gy * (y > 0).astype(gy.dtype),
              "tanh_backward": lambda gy, y: gy * (1 - y * y)}

    def __init__(self, in_params, out_params, operation, name="kernel", **kwargs):
        self.fn = self.BODIES[name]

    def __call__(self, *args):
        return _call(self.fn, args, {})


def _module_function(name):
    if name == "asnumpy":
        return lambda x: x.get() if isinstance(x, FakeDeviceArray) else np.asarray(x)
    fn = getattr(np, name)
    if name in ("asarray", "array", "ascontiguousarray"):
        def move(x, dtype=None, *args, **kwargs):
            if isinstance(x, FakeDeviceArray):
                return _wrap(getattr(np, name)(x._a, dtype, *args, **kwargs))
            return FakeDeviceArray(np.array(x, dtype=dtype, copy=True, order="C"))  # a transfer copies
        return move
    if not callable(fn) or isinstance(fn, type):
        return fn
    return lambda *args, **kwargs: _call(fn, args, kwargs)


def make_module():
    cupy = types.ModuleType("cupy")
    cupy.__version__ = "fake (NumPy " + np.__version__ + ")"
    cupy.ndarray = FakeDeviceArray
    cupy.get_array_module = lambda *arrays: cupy if any(isinstance(a, FakeDeviceArray) for a in arrays) else np
    cupy.asnumpy = _module_function("asnumpy")
    cupy.RawModule = _RawModule
    cupy.ElementwiseKernel = _ElementwiseKernel
    cupy.cuda = types.SimpleNamespace(
        Device=_Device, Event=_Event, get_elapsed_time=lambda a, b: 0.0,
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, runtimeGetVersion=lambda: 0,
                                      getDeviceProperties=lambda i: {"name": b"fake device"}))
    cupy.__getattr__ = _module_function
    cupyx = types.ModuleType("cupyx")
    cupyx.empty_pinned = lambda shape, dtype=np.float64: np.empty(shape, dtype)
    cupyx.scipy = types.ModuleType("cupyx.scipy")
    fft = types.ModuleType("cupyx.scipy.fft")
    for name in ("rfft2", "irfft2", "fft2", "ifft2"):
        setattr(fft, name, (lambda f: lambda *a, **k: _call(f, a, k))(getattr(scipy.fft, name)))
    cupyx.scipy.fft = fft
    return cupy, {"cupy": cupy, "cupyx": cupyx, "cupyx.scipy": cupyx.scipy, "cupyx.scipy.fft": fft}


def install():
    """From now on nn.backend sees the fake CuPy (available = True). Returns what to restore."""
    from nn import backend
    cupy, modules = make_module()
    saved = {k: sys.modules.get(k) for k in modules}
    state = (backend._cupy, backend.available)
    sys.modules.update(modules)
    backend._cupy, backend.available = cupy, True
    return cupy, saved, state


@contextlib.contextmanager
def installed():
    """nn.backend sees the fake CuPy (available = True) inside the block."""
    from nn import backend
    cupy, saved, state = install()
    try:
        yield cupy
    finally:
        backend._cupy, backend.available = state
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v

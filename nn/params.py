"""A named parameter container: init from layers, copy, flatten for line search, save/load.

Parameters are an ordered mapping {name: array}. Names follow "<layer>.W" / "<layer>.b";
`weight_names` are the weight matrices (".W"), the only ones under weight decay (eq. 12).
Saving writes an .npz atomically (temporary file + rename), so a crash never leaves a torn file.
"""
import os
import tempfile

import numpy as np

from . import backend


class Params(dict):
    """{name: array}, insertion-ordered."""

    @classmethod
    def init(cls, layers, rng, dtype=backend.DEFAULT_DTYPE):
        """Initialise every layer's parameters, in layer order, from one numpy Generator."""
        p = cls()
        for layer in layers:
            for name, value in layer.init_params(rng, dtype).items():
                if name in p:
                    raise ValueError(f"duplicate parameter name {name!r}")
                p[name] = value
        return p

    def copy(self):
        return Params((k, v.copy()) for k, v in self.items())

    def zeros_like(self):
        return Params((k, backend.get_array_module(v).zeros_like(v)) for k, v in self.items())

    def astype(self, dtype):
        return Params((k, v.astype(dtype)) for k, v in self.items())

    def to(self, device):
        return Params((k, backend.to_device(v, device)) for k, v in self.items())

    @property
    def weight_names(self):
        return [k for k in self if k.endswith(".W")]

    def size(self):
        return sum(int(v.size) for v in self.values())

    def flatten(self, names=None):
        """One vector of the named parameters (all by default), in container order."""
        names = list(self) if names is None else names
        xp = backend.get_array_module(*[self[k] for k in names])
        return xp.concatenate([self[k].ravel() for k in names])

    def unflatten(self, vector, names=None):
        """Params of the same shapes filled from a vector made by `flatten` (others shared)."""
        names = list(self) if names is None else names
        total = sum(self[k].size for k in names)
        if vector.size != total:
            raise ValueError(f"vector of length {vector.size} does not fit parameters of total size {total}")
        out, start = Params(self), 0
        for k in names:
            n = self[k].size
            out[k] = vector[start:start + n].reshape(self[k].shape)
            start += n
        return out

    def moved(self, grads, step):
        """New Params p + step * g for the names in grads (a line-search trial point)."""
        out = Params(self)
        for k, g in grads.items():
            out[k] = self[k] + step * g
        return out

    def save(self, path, extra=None):
        """Atomic .npz save; `extra` is a dict of additional arrays stored under 'extra/<key>'."""
        arrays = {"param/" + k: backend.to_numpy(v) for k, v in self.items()}
        for k, v in (extra or {}).items():
            arrays["extra/" + k] = np.asarray(v)
        save_npz_atomic(path, arrays)

    @classmethod
    def load(cls, path):
        """(Params, extra dict); a clear error for a missing or unreadable file."""
        arrays = load_npz(path)
        params = cls((k[6:], v) for k, v in arrays.items() if k.startswith("param/"))
        extra = {k[6:]: v for k, v in arrays.items() if k.startswith("extra/")}
        if not params:
            raise ValueError(f"{path}: no parameters found (not a parameter file)")
        return params, extra


def save_npz_atomic(path, arrays):
    """Write arrays to path via a temporary file in the same directory and an atomic rename."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_npz(path):
    """{name: array} from an .npz; ValueError naming the file when it is missing or unreadable."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as err:
        raise ValueError(f"{path}: unreadable parameter file ({type(err).__name__}: {err})") from None

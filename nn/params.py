"""A named parameter container (init from layers, copy, line-search trial points) and the atomic
.npz writer and reader that checkpoints use.

Parameters are an ordered mapping {name: array}. Names follow "<layer>.W" / "<layer>.b";
`weight_names` are the weight matrices (".W"), the only ones under weight decay (eq. 12).
`save_npz_atomic` writes through a temporary file and a rename (data.files.atomic_write), so a
crash never leaves a torn file.
"""
import os

import numpy as np

from data.files import atomic_write

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

    def moved(self, grads, step):
        """New Params p + step * g for the names in grads (a line-search trial point)."""
        out = Params(self)
        for k, g in grads.items():
            out[k] = self[k] + step * g
        return out


def save_npz_atomic(path, arrays):
    """Write arrays {name: array} to path (.npz) atomically (data.files.atomic_write: an OSError
    names path)."""
    atomic_write(path, lambda f: np.savez(f, **arrays))


_NOT_NPZ = {b"\x80": "a pickle", b"\x93": "a single .npy array"}   # by first byte


def load_npz(path):
    """{name: array} from an .npz; ValueError naming the file when it is missing or unreadable.
    Nothing pickled is ever loaded (NumPy's own message would advise loading it unsafely)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic != b"PK\x03\x04":
            raise ValueError(f"{_NOT_NPZ.get(magic[:1], 'unknown content')}, not an .npz archive")
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as err:
        if "allow_pickle" in str(err):    # an object array inside the archive
            raise ValueError(f"{path}: not a parameter file of this project (it holds Python objects, which are "
                             "never loaded)") from None
        raise ValueError(f"{path}: unreadable parameter file ({err})") from None
    except Exception as err:
        raise ValueError(f"{path}: unreadable parameter file ({type(err).__name__}: {err})") from None

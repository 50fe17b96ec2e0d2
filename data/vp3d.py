"""VideoPose3D's exchange layout for 3D poses (Pavllo et al. CVPR 2019, its data/prepare_data_h36m.py
and common/h36m_dataset.py): an .npz whose `positions_3d` is a dict {subject: {action: ...}},
arrays (frames, joints, 3) in metres.

save_positions_3d writes per-image poses in that layout, one array per camera: {subject: {action:
[array per camera]}} (VideoPose3D's per-camera layout, the one of its 2-D keypoints and of its
dataset's 3-D poses after the camera transform), frames in frame order, cameras in Human3.6M's
order (data.h36m.CAMERAS), 17 joints in data.h36m.JOINT_NAMES order (VideoPose3D's 17 joints, the
same order). load_positions_3d reads that layout back and VideoPose3D's own data_3d_h36m.npz (one
world-coordinate array of 32 joints per action: read as a one-element list, reduced to the 17).

The dicts are pickled object arrays (as VideoPose3D writes them: np.load(..., allow_pickle=True)
reads ours). The loader never runs NumPy's pickle loading: a restricted unpickler rebuilds only
NumPy arrays, dtypes, dicts, lists, strings and numbers, and refuses anything else.
"""
import io
import os
import pickle
import zipfile

import numpy as np

from . import h36m
from .files import atomic_write

UNITS = "m"


def action_key(action, subaction):
    """VideoPose3D's action name of a sequence: the release's file-name style, 'Walking' for
    sub-action 1, 'Walking 1' for sub-action 2, ... (canonical action names, data.h36m.ACTIONS)."""
    return str(action) if int(subaction) <= 1 else f"{action} {int(subaction) - 1}"


def sequences(meta):
    """{subject: {action key: [(camera, rows in frame order)]}} of metadata arrays (subject,
    action, subaction, camera, frame: (N,)); subjects, actions and cameras in Human3.6M order."""
    subject, camera = np.asarray(meta["subject"]).astype(str), np.asarray(meta["camera"]).astype(str)
    keys = np.array([action_key(a, s) for a, s in zip(meta["action"], meta["subaction"])], dtype=object)
    frame = np.asarray(meta["frame"])
    order = {name: i for i, name in enumerate((*h36m.ALL_SUBJECTS, *h36m.ACTIONS, *h36m.CAMERAS))}

    def ranked(values):
        return sorted(set(values.tolist()), key=lambda v: (order.get(str(v).rsplit(" ", 1)[0], len(order)), str(v)))

    out = {}
    for s in ranked(subject):
        out[s] = {}
        for a in ranked(keys[subject == s]):
            here = (subject == s) & (keys == a)
            out[s][a] = []
            for c in ranked(camera[here]):
                rows = np.flatnonzero(here & (camera == c))
                out[s][a].append((c, rows[np.argsort(frame[rows], kind="stable")]))
    return out


def save_positions_3d(path, poses_mm, meta, extra=None, **attrs):
    """Write poses (N, 17, 3) in mm, with their metadata (as PoseDataset.metadata), to path in the
    VideoPose3D layout (metres): positions_3d {subject: {action: [array per camera]}}, cameras and
    frames in the same layout (camera ids; int frame numbers), joint_names (17,), units "m".
    extra: {key: (N, 17, 3) mm} more arrays in the same layout (e.g. the ground truth); attrs:
    strings stored as 0-d arrays. Atomic (data.files)."""
    poses_mm = np.asarray(poses_mm)
    if poses_mm.ndim != 3 or poses_mm.shape[1:] != (h36m.N_JOINTS, 3):
        raise ValueError(f"save_positions_3d: poses must be (N, {h36m.N_JOINTS}, 3), got {poses_mm.shape}")
    seqs = sequences(meta)
    frame = np.asarray(meta["frame"]).astype(np.int64)

    def layout(values):
        return {s: {a: [values[rows] for _, rows in cams] for a, cams in acts.items()} for s, acts in seqs.items()}

    arrays = {key: layout((np.asarray(v) / 1000.0).astype(np.float32))
              for key, v in {"positions_3d": poses_mm, **(extra or {})}.items()}
    arrays["cameras"] = {s: {a: [c for c, _ in cams] for a, cams in acts.items()} for s, acts in seqs.items()}
    arrays["frames"] = layout(frame)
    arrays = {k: _object(v) for k, v in arrays.items()}
    arrays.update(joint_names=np.array(h36m.JOINT_NAMES), units=np.array(UNITS),
                  **{k: np.array(str(v)) for k, v in attrs.items()})
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _object(value):
    """A 0-d object array holding value (how np.savez stores a dict, as VideoPose3D's files do)."""
    out = np.empty((), dtype=object)
    out[()] = value
    return out


# ---------------------------------------------------------------------------- reading
def _numpy_globals():
    """The only callables a pickled NumPy array needs, by name (their module moved in NumPy 2)."""
    a = np.zeros(1)
    return {"_reconstruct": a.__reduce__()[0], "_frombuffer": a.__reduce_ex__(5)[0],
            "scalar": np.float64(1).__reduce__()[0], "ndarray": np.ndarray, "dtype": np.dtype}


class _ArraysOnly(pickle.Unpickler):
    """Unpickles NumPy arrays, dicts, lists, strings and numbers; any other global is refused."""
    allowed = _numpy_globals()

    def find_class(self, module, name):
        if (module == "numpy" or module.startswith(("numpy.core.", "numpy._core."))) and name in self.allowed:
            return self.allowed[name]
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only NumPy arrays are read")


def _read_npy(data):
    """An array from .npy bytes; object arrays through _ArraysOnly."""
    f = io.BytesIO(data)
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(f)
    if not dtype.hasobject:
        f.seek(0)
        return np.lib.format.read_array(f, allow_pickle=False)
    return _ArraysOnly(f).load()


def read_vp3d(path):
    """{name: array} of an .npz in VideoPose3D's layout (dicts as 0-d object arrays); ValueError
    naming the file when it is missing, not an .npz, or holds anything but NumPy data."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file")
    try:
        with zipfile.ZipFile(path) as z:
            return {n[:-4]: _read_npy(z.read(n)) for n in z.namelist() if n.endswith(".npy")}
    except zipfile.BadZipFile:
        raise ValueError(f"{path}: not an .npz archive") from None
    except (pickle.UnpicklingError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: unreadable ({err})") from None


def load_positions_3d(path, key="positions_3d"):
    """{subject: {action: [array (frames, 17, 3) per camera]}} from an .npz in VideoPose3D's layout,
    units as stored (metres in VideoPose3D's files and ours). A single array per action
    (VideoPose3D's data_3d_h36m.npz: world coordinates) becomes a one-element list; arrays of the
    32 mocap joints are reduced to the 17 of data.h36m.JOINT_NAMES (h36m.H36M32_TO_17)."""
    arrays = read_vp3d(path)
    if key not in arrays:
        raise ValueError(f"{path}: no {key!r} (it holds {', '.join(sorted(arrays)) or 'nothing'})")
    tree = arrays[key].item() if arrays[key].dtype.hasobject and arrays[key].ndim == 0 else None
    if not isinstance(tree, dict) or not all(isinstance(v, dict) for v in tree.values()):
        raise ValueError(f"{path}: {key} is not a dict {{subject: {{action: arrays}}}}")
    out = {}
    for subject, actions in tree.items():
        out[str(subject)] = {}
        for action, value in actions.items():
            views = [value] if isinstance(value, np.ndarray) and value.dtype != object else list(value)
            for i, a in enumerate(views):
                a = np.asarray(a)
                if a.ndim != 3 or a.shape[1] not in (h36m.N_JOINTS, 32) or a.shape[2] != 3:
                    raise ValueError(f"{path}: {key}[{subject}][{action}][{i}] has shape {a.shape}; expected "
                                     f"(frames, {h36m.N_JOINTS} or 32, 3)")
                views[i] = a[:, list(h36m.H36M32_TO_17)] if a.shape[1] == 32 else a
            out[str(subject)][str(action)] = views
    return out

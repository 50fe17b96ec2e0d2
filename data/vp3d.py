"""VideoPose3D's exchange layout for 3D poses (Pavllo et al. CVPR 2019, its data/prepare_data_h36m.py
and common/h36m_dataset.py): an .npz whose `positions_3d` is a dict {subject: {action: ...}},
arrays (frames, joints, 3) in metres.

save_positions_3d writes per-image poses in that layout, one array per camera: {subject: {action:
[array per camera]}} (VideoPose3D's per-camera layout, the one of its 2-D keypoints and of its
dataset's 3-D poses after the camera transform), frames in frame order, cameras in Human3.6M's
order (data.h36m.CAMERAS), 17 joints in data.h36m.JOINT_NAMES order (VideoPose3D's 17 joints, the
same order), actions named as VideoPose3D names them (action_key). The coordinates are the
caller's: camera coordinates (run_eval --export-vp3d) or world coordinates (to_world;
--export-vp3d-world). load_positions_3d reads that layout back and VideoPose3D's own
data_3d_h36m.npz (one world-coordinate array of 32 joints per action: read as a one-element list,
reduced to the 17).

VideoPose3D's data_3d_h36m.npz itself: positions_3d[subject][action] = (frames, 32, 3) float32,
world coordinates (z up), metres, every 50 Hz frame of the release's D3_Positions files, actions
named by the release's files with TakingPhoto -> Photo and WalkingDog -> WalkDog (S11
'Directions' left out). read_world_positions reads it (32 or 17 joints) keyed by this project's
(action, sub-action) (data.h36m.parse_sequence_name); world_bank turns it into pose-bank entries,
camera coordinates in mm at a rate dividing 50 Hz; `python -m data.vp3d --bank FILE.npz --into
DATA.h5` makes them the pose bank of a dataset file (bank_into; docs/data.md).

The dicts are pickled object arrays (as VideoPose3D writes them: np.load(..., allow_pickle=True)
reads ours). The loader never runs NumPy's pickle loading: a restricted unpickler rebuilds only
NumPy arrays, dtypes, dicts, lists, strings and numbers, and refuses anything else.
"""
import argparse
import io
import os
import pickle
import sys
import zipfile

import numpy as np

from . import flags, h36m
from .dataset import BANK_RATE_HZ, DatasetError, PoseDataset, bank_step, replace_bank
from .files import atomic_write

UNITS = "m"
# The 32 -> 17 joints. VideoPose3D's common/h36m_dataset.py removes these of the 32 mocap joints
# (Human36mDataset: remove_joints([4, 5, 9, 10, 11, 16, 20, 21, 22, 23, 24, 28, 29, 30, 31])), which
# keeps 0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27 in that (ascending) order:
# h36m.H36M32_TO_17, the joints of h36m.JOINT_NAMES in their order (Hip, RHip, RKnee, RFoot, LHip,
# LKnee, LFoot, Spine, Thorax, Neck/Nose, Head, LShoulder, LElbow, LWrist, RShoulder, RElbow,
# RWrist); its parents after the removal are h36m.PARENTS, its right joints h36m.RIGHT_JOINTS.
VP3D_REMOVED_JOINTS = (4, 5, 9, 10, 11, 16, 20, 21, 22, 23, 24, 28, 29, 30, 31)
VP3D_KEPT_JOINTS = tuple(j for j in range(32) if j not in VP3D_REMOVED_JOINTS)
# World coordinates beyond this many units are not metres (the capture volume spans a few metres;
# the same poses in mm reach thousands).
MAX_WORLD_M = 20.0


def action_key(action, subaction, subject=None):
    """VideoPose3D's action name of a sequence: the release's file name in canonical spelling
    (data.h36m.sequence_names; S11's Phoning sub-actions are 'Phoning 2' and 'Phoning 3', S1's
    Photo ones 'Photo' and 'Photo 1': VideoPose3D's keys). Without a subject, or for a sub-action
    the release does not have, the plain rule: 'Walking' for sub-action 1, 'Walking 1' for
    sub-action 2, ..."""
    if subject is not None and str(subject) in h36m.ALL_SUBJECTS:
        name = h36m.sequence_names(subject).get((str(action), int(subaction)))
        if name is not None:
            return name
    return str(action) if int(subaction) <= 1 else f"{action} {int(subaction) - 1}"


def sequences(meta):
    """{subject: {action key: [(camera, rows in frame order)]}} of metadata arrays (subject,
    action, subaction, camera, frame: (N,)); subjects, actions and cameras in Human3.6M order."""
    subject, camera = np.asarray(meta["subject"]).astype(str), np.asarray(meta["camera"]).astype(str)
    names = {}
    keys = np.array([names.setdefault(k, action_key(k[1], k[2], k[0])) for k in
                     zip(subject.tolist(), np.asarray(meta["action"]).astype(str).tolist(),
                         np.asarray(meta["subaction"]).astype(int).tolist())], dtype=object)
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


def to_world(poses_mm, meta, extrinsics=h36m.extrinsics):
    """Camera-coordinate poses (N,17,3) mm -> world coordinates (N,17,3) mm (float64, z up), each
    by the extrinsics of its subject and camera (meta: subject, camera (N,)): extrinsics(subject,
    camera) -> world-to-camera (R, T) (data.h36m.extrinsics, or PoseDataset.extrinsics for a file's
    own calibration). Poses must be absolute (a root-relative pose has no place in the world)."""
    poses_mm = np.asarray(poses_mm, dtype=np.float64)
    subject, camera = np.asarray(meta["subject"]).astype(str), np.asarray(meta["camera"]).astype(str)
    out = np.empty(poses_mm.shape)
    for s, c in sorted(set(zip(subject.tolist(), camera.tolist()))):
        sel = (subject == s) & (camera == c)
        out[sel] = h36m.camera_to_world(poses_mm[sel], *extrinsics(s, c))
    return out


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
    32 mocap joints are reduced to the 17 of data.h36m.JOINT_NAMES (VP3D_KEPT_JOINTS)."""
    tree = _tree(path, read_vp3d(path), key)
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
                views[i] = a[:, list(VP3D_KEPT_JOINTS)] if a.shape[1] == 32 else a
            out[str(subject)][str(action)] = views
    return out


# ---------------------------------------------------------------------------- VideoPose3D's world file
def _tree(path, arrays, key):
    """The dict {subject: {action: ...}} stored as arrays[key] (a 0-d object array); ValueError else."""
    if key not in arrays:
        raise ValueError(f"{path}: no {key!r} (it holds {', '.join(sorted(arrays)) or 'nothing'})")
    tree = arrays[key].item() if arrays[key].dtype.hasobject and arrays[key].ndim == 0 else None
    if not isinstance(tree, dict) or not all(isinstance(v, dict) for v in tree.values()):
        raise ValueError(f"{path}: {key} is not a dict {{subject: {{action: arrays}}}}")
    return tree


def _world_array(where, value):
    """One action's world array: float64 (frames, 17, 3) metres, checked; where names it."""
    if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.dtype.hasobject):
        raise ValueError(f"{where} is a list of arrays (one per camera): expected one world-coordinate array per "
                         "action, as VideoPose3D's data_3d_h36m.npz (read per-camera files with load_positions_3d)")
    a = np.asarray(value)
    if a.dtype.kind not in "fiu" or a.ndim != 3 or not len(a) or a.shape[1] not in (h36m.N_JOINTS, 32) \
            or a.shape[2] != 3:
        raise ValueError(f"{where} is {a.dtype} {a.shape}; expected (frames, 32 or {h36m.N_JOINTS}, 3) floats, metres")
    bad = ~np.isfinite(a).all(axis=(1, 2))
    if bad.any():
        raise ValueError(f"{where}: {int(bad.sum())} of {len(a)} frames hold NaN or inf (the first: frame "
                         f"{int(np.argmax(bad))})")
    largest = float(np.abs(a).max())
    if largest > MAX_WORLD_M:
        raise ValueError(f"{where}: coordinates up to {largest:.0f}: expected metres, VideoPose3D's unit (mm / 1000)")
    return (a[:, list(VP3D_KEPT_JOINTS)] if a.shape[1] == 32 else a).astype(np.float64)


def read_world_positions(path, subjects=None, key="positions_3d"):
    """{subject: {(action, sub-action): (frames, 17, 3) float64}} of VideoPose3D's
    data_3d_h36m.npz layout: one world-coordinate array per subject and action, metres, 32 joints
    (reduced to the 17, VP3D_KEPT_JOINTS) or 17, frame k the release's 50 Hz frame k. Actions are
    named as the release's files ('Walking 1'; S1's 'TakingPhoto' or VideoPose3D's 'Photo'),
    numbered into sub-actions as data.prepare_h36m numbers them (h36m.parse_sequence_name).
    subjects: those to read (names, or "train" / "test" / "all"; None: every subject of the file).
    A problem is a ValueError of one line naming the file: not an .npz, no positions_3d, an unknown
    or missing subject, an unknown action name, a list where an array belongs, a wrong shape, NaN or
    inf, coordinates too large for metres."""
    tree = _tree(path, read_vp3d(path), key)
    held = {}
    for name in tree:
        try:
            held[h36m.parse_subjects([str(name)])[0]] = name
        except ValueError as err:
            raise ValueError(f"{path}: {key}[{name!r}]: {err}") from None
    wanted = [s for s in h36m.ALL_SUBJECTS if s in held] if subjects is None else h36m.parse_subjects(subjects)
    missing = [s for s in wanted if s not in held]
    if missing:
        raise ValueError(f"{path}: no subject {', '.join(missing)} in {key} (it holds "
                         f"{', '.join(s for s in h36m.ALL_SUBJECTS if s in held) or 'none'})")
    out = {}
    for subject in wanted:
        out[subject] = {}
        for name, value in tree[held[subject]].items():
            where = f"{path}: {key}[{subject!r}][{str(name)!r}]"
            try:
                seq = h36m.parse_sequence_name(subject, str(name))
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
            if seq in out[subject]:
                raise ValueError(f"{where}: a second array for {seq[0]} sub-action {seq[1]} "
                                 f"({h36m.sequence_names(subject)[seq]!r} in either spelling)")
            out[subject][seq] = _world_array(where, value)
    if not any(out.values()):
        raise ValueError(f"{path}: {key} holds no sequence of {', '.join(wanted) or 'any subject'}")
    return out


def world_bank(path, rate_hz=BANK_RATE_HZ, subjects=None, cameras=h36m.CAMERA_IDS, extrinsics=h36m.extrinsics):
    """Pose-bank entries from VideoPose3D's data_3d_h36m.npz (read_world_positions): every
    sequence at rate_hz (its frames 0, s, 2s, ..., s = 50 / rate_hz, data.dataset.bank_step), seen by
    each camera: world metres -> mm -> camera coordinates by extrinsics(subject, camera) (world-to-
    camera R, T; h36m.world_to_camera), absolute like the bank's poses (the loader makes them root-
    relative). Returns (poses float32 (M,17,3) mm, meta {subject, action, subaction, camera, frame}
    (M,)), ordered by subject, action, sub-action, camera, frame."""
    step = bank_step(rate_hz)
    world = read_world_positions(path, subjects)
    poses, meta = [], {k: [] for k in ("subject", "action", "subaction", "camera", "frame")}
    for subject, seqs in world.items():
        for (action, subaction), arr in sorted(seqs.items(), key=lambda kv: (h36m.ACTIONS.index(kv[0][0]), kv[0][1])):
            frames = np.arange(0, len(arr), step)
            mm = arr[frames] * 1000.0
            for camera in cameras:
                poses.append(h36m.world_to_camera(mm, *extrinsics(subject, camera)).astype(np.float32))
                for k, v in (("subject", subject), ("action", action), ("subaction", subaction), ("camera", camera)):
                    meta[k].append(np.full(len(frames), v, dtype=object if k != "subaction" else np.int64))
                meta["frame"].append(frames)
    return np.concatenate(poses), {k: np.concatenate(v) for k, v in meta.items()}


def bank_into(npz, into, out=None, rate_hz=None, subjects=None, tolerance_mm=5.0):
    """Make VideoPose3D's data_3d_h36m.npz the pose bank of the dataset file `into` (written to `out`,
    default `into` itself, atomically; data.dataset.replace_bank): world_bank's entries, by the
    file's own extrinsics (PoseDataset.extrinsics) for each of its cameras, at rate_hz (None: the
    file's bank rate, else data.dataset.BANK_RATE_HZ), subjects as read_world_positions (None: all of
    the .npz). The entries of the frames the file has images of keep the images' poses, which must
    agree within tolerance_mm (None: unchecked); image rows the .npz lacks keep their own entries;
    the old bank's other entries go. A subject new to the file gets a T pose from its bank poses
    (the median bone lengths, as data.prepare_h36m). Returns replace_bank's summary plus rate_hz,
    subjects, cameras and out."""
    from .skeleton import Skeleton

    out = os.fspath(into if out is None else out)
    with PoseDataset(into) as ds:
        rate_hz = float(rate_hz or ds.bank_rate_hz or BANK_RATE_HZ)
        cameras = [c for c in h36m.CAMERA_IDS if c in ds.cameras] + [c for c in ds.cameras if c not in h36m.CAMERA_IDS]
        poses, meta = world_bank(npz, rate_hz, subjects, cameras, ds.extrinsics)
        held = [s for s in h36m.ALL_SUBJECTS if s in set(meta["subject"].tolist())]
        tposes = {}
        for s in held:
            try:
                ds.tpose(s)
            except DatasetError:
                tposes[s] = Skeleton.from_poses(poses[meta["subject"] == s][::10]).tpose()
    info = {"source": os.path.abspath(os.fspath(npz)), "layout": "VideoPose3D data_3d_h36m.npz (world, metres)",
            "rate_hz": rate_hz, "subjects": held, "cameras": cameras, "tolerance_mm": tolerance_mm}
    summary = replace_bank(into, poses, meta, rate_hz, out=out, tolerance_mm=tolerance_mm, tposes=tposes, info=info)
    return dict(summary, rate_hz=rate_hz, subjects=held, cameras=cameras, out=out)


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m data.vp3d",
        description="Make VideoPose3D's data_3d_h36m.npz (positions_3d, world coordinates, metres) the pose bank "
                    "(bank/) of a dataset file (docs/data.md).")
    p.add_argument("--bank", required=True, metavar="NPZ", help="VideoPose3D's data_3d_h36m.npz (32 or 17 joints)")
    p.add_argument("--into", required=True, metavar="FILE.h5", help="the dataset file whose pose bank is replaced")
    p.add_argument("--out", default=None, metavar="FILE.h5",
                   help="write the result here and leave --into as it is (default: replace --into, atomically)")
    p.add_argument("--rate", type=flags.positive_float, default=None, metavar="HZ",
                   help="poses per second of every sequence; must divide 50 and the images' frames must lie on its "
                        f"grid (default: the file's bank rate, else {BANK_RATE_HZ:g})")
    p.add_argument("--subjects", default=None,
                   help="comma-separated subjects, or train / test / all (default: every subject of the .npz)")
    p.add_argument("--tolerance-mm", type=flags.non_negative_float, default=5.0, metavar="MM",
                   help="largest distance of a joint between the .npz's pose and the pose of an image row of the same "
                        "frame and camera (default: %(default)s)")
    return p


def parse_args(argv=None):
    """The checked arguments; a bad one exits with argparse's usage error (status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rate is not None:
        try:
            bank_step(args.rate)
        except ValueError as err:
            parser.error(f"--rate: {err}")
    if args.subjects is not None:
        try:
            args.subjects = h36m.parse_subjects(args.subjects)
        except ValueError as err:
            parser.error(f"--subjects: {err}")
    for flag, path in (("--bank", args.bank), ("--into", args.into)):
        if not os.path.isfile(path):
            parser.error(f"{flag} {path}: no such file")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        s = bank_into(args.bank, args.into, args.out, args.rate, args.subjects, args.tolerance_mm)
    except (DatasetError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    diff = "" if s["max_difference_mm"] is None else \
        f", largest difference {s['max_difference_mm']:.3f} mm (mean {s['mean_difference_mm']:.3f})"
    print(f"{s['out']}: pose bank of {s['entries']} entries at {s['rate_hz']:g} Hz from {args.bank}: "
          f"{s['given']} poses of {', '.join(s['subjects'])} x {len(s['cameras'])} cameras; {s['linked']} image rows "
          f"matched{diff}; {s['from_images']} entries kept from image rows the .npz lacks")
    return 0


if __name__ == "__main__":
    sys.exit(main())

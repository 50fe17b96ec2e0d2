"""The one HDF5 dataset format of the project: its schema, its writer and its validating reader.

File layout (FORMAT_VERSION 1; docs/data.md has the full schema):

    images     uint8   (N, S, S, 3)  RGB crops, S = IMAGE_SIZE, one image per chunk (fast random reads)
    poses      float32 (N, 17, 3)    joints in camera coordinates, mm (absolute, not root-relative)
    subject    bytes   (N,)          "S1" ... "S11"
    action     bytes   (N,)          canonical action name (data.h36m.ACTIONS)
    subaction  int16   (N,)          1 or 2
    camera     bytes   (N,)          camera id, e.g. "54138969"
    frame      int32   (N,)          frame index at 50 Hz in the original sequence
    box        float32 (N, 3)        the crop in the full camera image: x0, y0, side (pixels)
    tpose/<S>  float32 (17, 3)       neutral T pose of subject S (root at the origin, z up, mm)
    image_moments/<S>                per-subject RGB sums (attributes count, sum, outer) so the
                                     training-set colour statistics need no pass over the images
    attributes: format_version, source ("synthetic" | "h36m"), joint_names (JSON), parents,
                cameras (JSON: intrinsics, extrinsics where known), generator (JSON, synthetic only)

The network's inputs are served by data.loader (root-relative poses, normalised NCHW images).
"""
import json
import os
import re

import h5py
import numpy as np

from data import h36m
from data.h36m import N_JOINTS

FORMAT_VERSION = 1
SOURCES = ("synthetic", "h36m")
IMAGE_SIZE = 128   # side of the stored square crops, pixels
_STRING_FIELDS = {"subject": 8, "action": 16, "camera": 16}
_INT_FIELDS = {"subaction": np.int16, "frame": np.int32}
_META_FIELDS = ("subject", "action", "subaction", "camera", "frame")


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or malformed, or a request does not match its contents."""


def _items(names, separators=","):
    """'a, b' or ['a', 'b'] or 'a' -> ['a', 'b'] (stripped strings, empty ones dropped)."""
    if isinstance(names, str):
        names = re.split(f"[{separators}]+", names)
    return [str(n).strip() for n in names if str(n).strip()]


def _decode(values):
    return np.array([v.decode("utf-8") for v in values], dtype=object) if len(values) else \
        np.zeros(0, dtype=object)


# ============================================================================ writer
class DatasetWriter:
    """Writes a dataset file incrementally; the file appears at `path` only when close() succeeds.

    DatasetWriter(path, source="synthetic", cameras=json_text, generator=dict_or_None)
    append(images (n,S,S,3) uint8, poses (n,17,3) mm, subject, action, subaction, camera, frame,
           box=None) where the metadata are scalars (shared by the n rows) or length-n sequences
        and box (n,3) is the crop (x0, y0, side) in the full image (None: the square box around
        the projected joints, data.h36m.square_box with data.h36m.BOX_MARGIN).
    set_tpose(subject, (17,3)); close(). Use as a context manager: an exception discards the file.
    """

    def __init__(self, path, source, cameras=None, generator=None, image_size=IMAGE_SIZE,
                 compression="gzip", compression_opts=1):
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        self.path = str(path)
        self.tmp_path = self.path + ".tmp"
        self.image_size = int(image_size)
        self.n = 0
        self._tposes = {}
        self._moments = {}
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        self._file = h5py.File(self.tmp_path, "w")
        f = self._file
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["source"] = source
        f.attrs["joint_names"] = json.dumps(list(h36m.JOINT_NAMES))
        f.attrs["parents"] = np.array(h36m.PARENTS, dtype=np.int32)
        f.attrs["cameras"] = cameras if cameras is not None else h36m.cameras_json()
        self._cameras = {cid: h36m.Camera.from_dict(c) for cid, c in json.loads(f.attrs["cameras"]).items()}
        if generator is not None:
            f.attrs["generator"] = json.dumps(generator, sort_keys=True)
        s = self.image_size
        # One image per chunk: a random mini-batch then decompresses exactly the images it needs.
        f.create_dataset("images", (0, s, s, 3), maxshape=(None, s, s, 3), dtype=np.uint8,
                         chunks=(1, s, s, 3), compression=compression,
                         compression_opts=compression_opts if compression == "gzip" else None)
        f.create_dataset("poses", (0, N_JOINTS, 3), maxshape=(None, N_JOINTS, 3), dtype=np.float32,
                         chunks=(4096, N_JOINTS, 3))
        f.create_dataset("box", (0, 3), maxshape=(None, 3), dtype=np.float32, chunks=(8192, 3))
        for name, length in _STRING_FIELDS.items():
            f.create_dataset(name, (0,), maxshape=(None,), dtype=f"S{length}", chunks=(8192,))
        for name, dtype in _INT_FIELDS.items():
            f.create_dataset(name, (0,), maxshape=(None,), dtype=dtype, chunks=(8192,))

    def append(self, images, poses, subject, action, subaction, camera, frame, box=None):
        """Append n rows. images (n,S,S,3) uint8; poses (n,17,3) camera coordinates, mm."""
        images = np.asarray(images)
        poses = np.asarray(poses, dtype=np.float32)
        n = len(images)
        s = self.image_size
        if images.shape != (n, s, s, 3) or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 ({n},{s},{s},3), got {images.dtype} {images.shape}")
        if poses.shape != (n, N_JOINTS, 3):
            raise ValueError(f"poses must be ({n},{N_JOINTS},3), got {poses.shape}")
        if not np.isfinite(poses).all():
            raise ValueError("poses contain NaN or inf")
        columns = {"subject": subject, "action": action, "subaction": subaction, "camera": camera,
                   "frame": frame}
        for name, value in columns.items():
            value = np.asarray(value)
            columns[name] = np.broadcast_to(value, (n,)) if value.ndim == 0 else value
            if columns[name].shape != (n,):
                raise ValueError(f"{name} must be a scalar or have length {n}, got {value.shape}")
        subjects = [str(v) for v in columns["subject"]]
        for name in set(subjects):
            h36m.parse_subjects([name])
        actions = [h36m.canonical_action(str(v)) for v in columns["action"]]
        cameras = [str(v) for v in columns["camera"]]
        for name in set(cameras):
            if name not in self._cameras:
                raise ValueError(f"camera {name!r} is not in the file's cameras ({', '.join(self._cameras)})")
        if box is None:
            box = [self._default_box(p, self._cameras[c]) for p, c in zip(poses, cameras)]
        box = np.asarray(box, dtype=np.float32).reshape(-1, 3)
        if box.shape != (n, 3) or not np.isfinite(box).all() or (box[:, 2] <= 0).any():
            raise ValueError(f"box must be finite ({n},3) with a positive side, got {box.shape}")
        f = self._file
        lo, hi = self.n, self.n + n
        for name in ("images", "poses", "box") + _META_FIELDS:
            f[name].resize(hi, axis=0)
        f["images"][lo:hi] = images
        f["poses"][lo:hi] = poses
        f["box"][lo:hi] = box
        f["subject"][lo:hi] = np.array(subjects, dtype="S8")
        f["action"][lo:hi] = np.array(actions, dtype="S16")
        f["camera"][lo:hi] = np.array(cameras, dtype="S16")
        f["subaction"][lo:hi] = columns["subaction"].astype(np.int16)
        f["frame"][lo:hi] = columns["frame"].astype(np.int32)
        self._accumulate_moments(images, np.array(subjects))
        self.n = hi

    @staticmethod
    def _default_box(pose, camera):
        # A pose partly behind the camera has no meaningful projection: use the whole frame.
        if (pose[:, 2] <= 1.0).any():
            return np.array([0.0, 0.0, max(camera.width, camera.height)])
        return h36m.square_box(h36m.project(pose, camera), h36m.BOX_MARGIN)

    def _accumulate_moments(self, images, subjects):
        # Exact integer sums per subject, so any subset of subjects gets its exact RGB statistics.
        for name in np.unique(subjects):
            pixels = images[subjects == name].reshape(-1, 3).astype(np.int64)
            count, total, outer = self._moments.get(name, (0, np.zeros(3, np.int64),
                                                           np.zeros((3, 3), np.int64)))
            self._moments[name] = (count + len(pixels), total + pixels.sum(axis=0),
                                   outer + pixels.T @ pixels)

    def set_tpose(self, subject, tpose):
        """Store the neutral T pose (17,3) mm of `subject` (root at the origin, z up)."""
        tpose = np.asarray(tpose, dtype=np.float32)
        if tpose.shape != (N_JOINTS, 3) or not np.isfinite(tpose).all():
            raise ValueError(f"T pose of {subject} must be finite ({N_JOINTS},3), got {tpose.shape}")
        self._tposes[h36m.parse_subjects([subject])[0]] = tpose

    def close(self):
        """Write the per-subject groups and atomically move the file into place. Returns the path."""
        f = self._file
        present = sorted(set(_decode(f["subject"][:])), key=h36m.ALL_SUBJECTS.index)
        missing = [s for s in present if s not in self._tposes]
        if missing:
            self.abort()
            raise ValueError(f"{self.path}: no T pose given for subjects {', '.join(missing)}")
        group = f.create_group("tpose")
        for name, tpose in self._tposes.items():
            group.create_dataset(name, data=tpose)
        group = f.create_group("image_moments")
        for name, (count, total, outer) in self._moments.items():
            g = group.create_group(name)
            g.attrs["count"] = count
            g.attrs["sum"] = total
            g.attrs["outer"] = outer
        f.close()
        os.replace(self.tmp_path, self.path)
        return self.path

    def abort(self):
        """Close and delete the temporary file."""
        try:
            self._file.close()
        finally:
            if os.path.exists(self.tmp_path):
                os.remove(self.tmp_path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


# ============================================================================ reader
class PoseDataset:
    """A validated, read-only dataset file. PoseDataset(path); also a context manager.

    Attributes: path, n, subjects (tuple, in ALL_SUBJECTS order), actions (tuple, in ACTIONS order),
    source, cameras ({id: h36m.Camera}), camera_info (the parsed cameras JSON), generator (dict or
    None), image_size.
    """

    def __init__(self, path):
        self.path = str(path)
        if not os.path.exists(self.path):
            raise DatasetError(f"{self.path}: no such file")
        if not h5py.is_hdf5(self.path):
            raise DatasetError(f"{self.path}: not an HDF5 file")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as e:
            raise DatasetError(f"{self.path}: cannot open as HDF5 ({e})") from None
        try:
            self._validate()
        except Exception:
            self._file.close()
            raise

    # ------------------------------------------------------------------ validation
    def _fail(self, field, message):
        raise DatasetError(f"{self.path}: field '{field}': {message}")

    def _attr(self, name):
        if name not in self._file.attrs:
            self._fail(name, "missing file attribute")
        value = self._file.attrs[name]
        return value.decode() if isinstance(value, bytes) else value

    def _json_attr(self, name):
        try:
            return json.loads(self._attr(name))
        except (TypeError, ValueError):
            self._fail(name, "expected a JSON text attribute")

    def _validate(self):
        f = self._file
        version = self._attr("format_version")
        if not np.issubdtype(np.asarray(version).dtype, np.integer) or int(version) != FORMAT_VERSION:
            self._fail("format_version", f"expected {FORMAT_VERSION}, got {version!r}")
        self.source = str(self._attr("source"))
        if self.source not in SOURCES:
            self._fail("source", f"expected one of {', '.join(SOURCES)}, got {self.source!r}")
        if self._json_attr("joint_names") != list(h36m.JOINT_NAMES):
            self._fail("joint_names", f"expected the {N_JOINTS} Human3.6M joints in data.h36m order")
        if tuple(np.asarray(self._attr("parents")).tolist()) != h36m.PARENTS:
            self._fail("parents", f"expected {list(h36m.PARENTS)}")
        self.camera_info = self._json_attr("cameras")
        try:
            self.cameras = {cid: h36m.Camera.from_dict(d) for cid, d in self.camera_info.items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            self._fail("cameras", "expected a JSON object of camera intrinsics (fx, fy, cx, cy, k, p,"
                                  " width, height)")
        self.generator = self._json_attr("generator") if "generator" in f.attrs else None

        # Shapes and types of the per-row fields.
        def dataset(name):
            if name not in f or not isinstance(f[name], h5py.Dataset):
                self._fail(name, "missing dataset")
            return f[name]

        images = dataset("images")
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 \
                or images.shape[1] != images.shape[2]:
            self._fail("images", f"expected uint8 (N,S,S,3), got {images.dtype} {images.shape}")
        self.n = images.shape[0]
        self.image_size = images.shape[1]
        poses = dataset("poses")
        if poses.dtype.kind != "f" or poses.shape != (self.n, N_JOINTS, 3):
            self._fail("poses", f"expected float ({self.n},{N_JOINTS},3), got {poses.dtype} {poses.shape}")
        box = dataset("box")
        if box.dtype.kind != "f" or box.shape != (self.n, 3):
            self._fail("box", f"expected float ({self.n},3), got {box.dtype} {box.shape}")
        self._box = box[:].astype(np.float32)
        if not (np.isfinite(self._box).all() and (self._box[:, 2] > 0).all()):
            self._fail("box", "expected finite boxes with a positive side")
        for name in _STRING_FIELDS:
            d = dataset(name)
            if d.dtype.kind != "S" or d.shape != (self.n,):
                self._fail(name, f"expected fixed-length bytes ({self.n},), got {d.dtype} {d.shape}")
        for name in _INT_FIELDS:
            d = dataset(name)
            if d.dtype.kind not in "iu" or d.shape != (self.n,):
                self._fail(name, f"expected integers ({self.n},), got {d.dtype} {d.shape}")

        # Contents: poses finite (read in chunks so a huge file stays bounded in memory).
        self._poses = np.empty((self.n, N_JOINTS, 3), dtype=np.float32)
        for lo in range(0, self.n, 65536):
            block = poses[lo:lo + 65536].astype(np.float32)
            bad = ~np.isfinite(block).all(axis=(1, 2))
            if bad.any():
                self._fail("poses", f"row {lo + int(np.argmax(bad))} is not finite (NaN or inf)")
            self._poses[lo:lo + len(block)] = block
        self._meta = {name: _decode(f[name][:]) for name in _STRING_FIELDS}
        self._meta.update({name: f[name][:].astype(np.int64) for name in _INT_FIELDS})
        for s in np.unique(self._meta["subject"]):
            if s not in h36m.ALL_SUBJECTS:
                self._fail("subject", f"unknown subject {s!r}; expected one of {', '.join(h36m.ALL_SUBJECTS)}")
        for a in np.unique(self._meta["action"]):
            if a not in h36m.ACTIONS:
                self._fail("action", f"unknown action {a!r}; expected one of {', '.join(h36m.ACTIONS)}")
        for c in np.unique(self._meta["camera"]):
            if c not in self.cameras:
                self._fail("camera", f"camera {c!r} has no entry in the cameras attribute")
        present = set(self._meta["subject"])
        self.subjects = tuple(s for s in h36m.ALL_SUBJECTS if s in present)
        present = set(self._meta["action"])
        self.actions = tuple(a for a in h36m.ACTIONS if a in present)
        self._tposes = {}
        for s in self.subjects:
            key = f"tpose/{s}"
            if key not in f:
                self._fail("tpose", f"missing T pose of subject {s}")
            t = np.asarray(f[key][()], dtype=np.float32)
            if t.shape != (N_JOINTS, 3) or not np.isfinite(t).all():
                self._fail(key, f"expected finite ({N_JOINTS},3), got {t.shape}")
            self._tposes[s] = t

    # ------------------------------------------------------------------ access
    def select(self, subjects=None, actions=None, cameras=None):
        """Sorted int64 row indices of the given subjects / actions / cameras (None = all).

        Each argument is a name, a comma-separated string or a list; subjects may also be the
        groups train / test / all (those of the group that the file holds), actions raw aliases.
        A name the file does not hold raises DatasetError listing what it holds.
        """
        keep = np.ones(self.n, dtype=bool)
        if subjects is not None:
            keep &= np.isin(self._meta["subject"], self._subject_names(subjects))
        if actions is not None:
            keep &= np.isin(self._meta["action"], [self._action_name(a) for a in _items(actions)])
        if cameras is not None:
            held = sorted(set(self._meta["camera"]))
            absent = [c for c in _items(cameras) if c not in held]
            if absent:
                raise DatasetError(f"{self.path}: no camera {', '.join(absent)} in the file; it holds "
                                   f"{', '.join(held)}")
            keep &= np.isin(self._meta["camera"], _items(cameras))
        return np.flatnonzero(keep).astype(np.int64)

    def _subject_names(self, subjects):
        groups = {"train": h36m.TRAIN_SUBJECTS, "test": h36m.TEST_SUBJECTS, "all": h36m.ALL_SUBJECTS}
        names = []
        for item in _items(subjects, separators=r",\s"):
            if item.lower() in groups:
                group = groups[item.lower()]
                held = [s for s in group if s in self.subjects]
                if not held:
                    raise DatasetError(f"{self.path}: no {item} subject ({', '.join(group)}) in the file; "
                                       f"it holds {', '.join(self.subjects)}")
                names.extend(held)
                continue
            try:
                name = h36m.parse_subjects([item])[0]
            except ValueError as e:
                raise DatasetError(f"{self.path}: {e}; the file holds {', '.join(self.subjects)}") from None
            if name not in self.subjects:
                raise DatasetError(f"{self.path}: no subject {name} in the file; it holds {', '.join(self.subjects)}")
            names.append(name)
        return names

    def _action_name(self, raw):
        try:
            name = h36m.canonical_action(raw)
        except ValueError:
            name = None
        if name not in self.actions:
            raise DatasetError(f"{self.path}: no action {raw!r} in the file; it holds {', '.join(self.actions)}")
        return name

    def _index(self, idx):
        if idx is None:
            return np.arange(self.n)
        idx = np.asarray(idx)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise DatasetError(f"{self.path}: indices must be a 1-D integer array, got {idx.dtype} {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise DatasetError(f"{self.path}: index out of range [0, {self.n})")
        return idx.astype(np.int64)

    def poses(self, idx=None):
        """float32 (n,17,3) poses in camera coordinates, mm (absolute, not root-relative)."""
        return self._poses[self._index(idx)].copy()

    def metadata(self, idx=None):
        """dict of (n,) arrays: subject (str), action (str), subaction (int), camera (str), frame (int)."""
        idx = self._index(idx)
        return {name: self._meta[name][idx] for name in _META_FIELDS}

    def boxes(self, idx=None):
        """float32 (n,3) crops (x0, y0, side) in full-image pixels: crop pixel (i, j) of an S x S
        image covers x0 + [j, j+1) * side / S, y0 + [i, i+1) * side / S."""
        return self._box[self._index(idx)].copy()

    def crop_joints(self, idx=None, poses=None):
        """float32 (n,17,2) 2-D joints (x, y) in the stored S x S crops' pixel units: each pose
        projected by its row's camera (with distortion), minus the box corner, scaled by S / side.
        poses: (n,17,3) camera-coordinate poses in mm to project instead of the stored ones (a
        prediction placed at the true root, say)."""
        rows = self._index(idx)
        boxes, cams = self._box[rows], self._meta["camera"][rows]
        if poses is None:
            poses = self._poses[rows]
        elif np.shape(poses) != (len(rows), N_JOINTS, 3):
            raise ValueError(f"crop_joints: poses {np.shape(poses)} do not match the {len(rows)} rows")
        out = np.empty(poses.shape[:2] + (2,), dtype=np.float32)
        for cid in np.unique(cams):
            sel = cams == cid
            out[sel] = h36m.project_to_crop(poses[sel], self.cameras[cid], boxes[sel], self.image_size)
        return out

    def read_images(self, idx, chunk=256):
        """uint8 (n,S,S,3) images of rows idx, in idx order. Reads sorted blocks of at most `chunk`."""
        idx = self._index(idx)
        s = self.image_size
        out = np.empty((len(idx), s, s, 3), dtype=np.uint8)
        if len(idx) == 0:
            return out
        order = np.argsort(idx, kind="stable")
        rows = idx[order]
        images = self._file["images"]
        for lo in range(0, len(rows), chunk):
            block = rows[lo:lo + chunk]
            first, last = int(block[0]), int(block[-1])
            if last - first + 1 <= 2 * len(block):
                # Dense block: one contiguous read.
                data = images[first:last + 1][block - first]
            else:
                # Sparse block: one slice per run of consecutive rows (h5py's point selections
                # are an order of magnitude slower than this for a random mini-batch).
                unique, inverse = np.unique(block, return_inverse=True)
                runs = np.split(unique, np.flatnonzero(np.diff(unique) != 1) + 1)
                data = np.concatenate([images[int(r[0]):int(r[-1]) + 1] for r in runs])[inverse]
            out[order[lo:lo + chunk]] = data
        return out

    def tpose(self, subject):
        """(17,3) float32 neutral T pose of `subject` (root at the origin, world axes z up, mm)."""
        if subject not in self._tposes:
            raise DatasetError(f"{self.path}: no T pose for subject {subject!r}; the file holds "
                               f"{', '.join(self.subjects)}")
        return self._tposes[subject].copy()

    def image_moments(self, subjects):
        """Stored exact RGB sums of `subjects`: (count, sum (3,), outer (3,3)), or None if absent."""
        count, total, outer = 0, np.zeros(3), np.zeros((3, 3))
        for s in subjects:
            key = f"image_moments/{s}"
            if key not in self._file:
                return None
            g = self._file[key].attrs
            count += int(g["count"])
            total = total + np.asarray(g["sum"], dtype=np.float64)
            outer = outer + np.asarray(g["outer"], dtype=np.float64)
        return count, total, outer

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __len__(self):
        return self.n

    def __repr__(self):
        return (f"PoseDataset({self.path!r}, n={self.n}, source={self.source}, "
                f"subjects={','.join(self.subjects)})")


def root_relative(poses):
    """(...,17,3) poses -> the same poses minus their root joint (joint 0)."""
    poses = np.asarray(poses)
    return poses - poses[..., h36m.ROOT:h36m.ROOT + 1, :]

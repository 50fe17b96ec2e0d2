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
    bank/      optional pose bank: every pose of the sequences at bank/@rate_hz, all cameras
      poses    float32 (M, 17, 3)    camera coordinates, mm, absolute
      subject, action, subaction, camera, frame   (M,) encoded as the image rows' fields
      image_row int64  (M,)          the image row showing this frame and camera, -1 if none;
                                     every image row has exactly one bank entry
    attributes: format_version, source ("synthetic" | "h36m"), joint_names (JSON), parents,
                cameras (JSON: intrinsics, extrinsics where known), generator (JSON, synthetic only)

The network's inputs are served by data.loader (root-relative poses, normalised NCHW images).
"""
import contextlib
import hashlib
import json
import os
import re

import h5py
import numpy as np

from data import h36m
from data.files import os_reason
from data.h36m import N_JOINTS

FORMAT_VERSION = 1
SOURCES = ("synthetic", "h36m")
IMAGE_SIZE = 128   # side of the stored square crops, pixels
BANK_RATE_HZ = 10.0   # default rate of the pose bank: every 5th frame of the 50 Hz capture
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


def _show(value):
    """A stored value as one line of text for a message: bytes decoded, NumPy scalars as Python
    ones, arrays by dtype and shape."""
    if isinstance(value, np.ndarray) and value.ndim:
        return f"a {value.dtype} array of shape {value.shape}"
    value = value.item() if isinstance(value, (np.generic, np.ndarray)) else value
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return repr(value)


def bank_step(rate_hz):
    """Frames of the 50 Hz capture (h36m.FPS) between pose-bank entries at `rate_hz` (an int >= 1).

    The bank's frames are 0, step, 2 step, ... of every sequence, so the rate must divide 50 Hz.
    """
    step = h36m.FPS / float(rate_hz) if np.isfinite(rate_hz) and rate_hz > 0 else 0.0
    if step < 1 or abs(step - round(step)) > 1e-9:
        raise ValueError(f"bank rate {rate_hz!r} Hz must be {h36m.FPS} Hz divided by a whole number "
                         f"(50, 25, 10, 5, 2, 1, ...)")
    return int(round(step))


def _keys(*metas):
    """One int64 array per metadata dict (fields _META_FIELDS, any encoding shared by all), equal
    exactly where all five fields are equal: frames of one sequence and camera are told apart."""
    sizes = [len(m["frame"]) for m in metas]
    key = np.zeros(sum(sizes), dtype=np.int64)
    for name in _META_FIELDS:
        values = np.concatenate([np.asarray(m[name]) for m in metas])
        # Fixed-width strings sort an order of magnitude faster than Python objects.
        _, code = np.unique(values.astype(str) if values.dtype == object else values, return_inverse=True)
        key = key * (int(code.max(initial=0)) + 1) + code.reshape(-1)
    return np.split(key, np.cumsum(sizes)[:-1])


def _bank_problem(n, image_meta, image_poses, bank_meta, bank_poses, image_row):
    """Why a pose bank does not fit the n image rows, as (field, message), or None if it does.

    Every image row has exactly one entry, with the row's metadata and pose; no frame and
    camera of a sequence appears twice; image_row is -1 or a row index.
    """
    bad = np.flatnonzero((image_row < -1) | (image_row >= n))
    if len(bad):
        return "bank/image_row", f"entry {bad[0]} names row {image_row[bad[0]]}, outside [-1, {n})"
    entry = np.flatnonzero(image_row >= 0)
    rows = image_row[entry]
    count = np.bincount(rows, minlength=n)
    if (count != 1).any():
        row = int(np.flatnonzero(count != 1)[0])
        return "bank/image_row", f"image row {row} has {count[row]} bank entries, not 1"
    for name in _META_FIELDS:
        differ = np.flatnonzero(np.asarray(bank_meta[name])[entry] != np.asarray(image_meta[name])[rows])
        if len(differ):
            e = entry[differ[0]]
            return f"bank/{name}", (f"entry {e} is {_show(bank_meta[name][e])} but its image row "
                                    f"{image_row[e]} is {_show(image_meta[name][image_row[e]])} (linked by "
                                    "bank/image_row)")
    differ = np.flatnonzero((bank_poses[entry] != image_poses[rows]).any(axis=(1, 2)))
    if len(differ):
        e = entry[differ[0]]
        return "bank/poses", (f"entry {e} differs from the pose of its image row {image_row[e]} (linked by "
                              "bank/image_row)")
    (key,) = _keys(bank_meta)
    order = np.argsort(key, kind="stable")
    same = np.flatnonzero(key[order][1:] == key[order][:-1])
    if len(same):
        a, b = sorted(order[same[0]:same[0] + 2])
        return "bank/frame", f"entries {a} and {b} are the same frame and camera of one sequence"
    return None


def _encode_columns(n, poses, subject, action, subaction, camera, frame, cameras):
    """Checked poses (n,17,3) float32 and metadata columns (n,) in their stored encodings; cameras:
    the file's camera ids."""
    poses = np.asarray(poses, dtype=np.float32)
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
    names = [str(v) for v in columns["camera"]]
    for name in set(names):
        if name not in cameras:
            raise ValueError(f"camera {name!r} is not in the file's cameras ({', '.join(cameras)})")
    columns["subject"] = np.array(subjects, dtype="S8")
    columns["action"] = np.array([h36m.canonical_action(str(v)) for v in columns["action"]], dtype="S16")
    columns["camera"] = np.array(names, dtype="S16")
    columns["subaction"] = columns["subaction"].astype(np.int16)
    columns["frame"] = columns["frame"].astype(np.int32)
    return poses, columns


def _bank_entries(image_meta, bank_meta):
    """int64 (n,): for each image row the index of the bank entry with the same five metadata
    fields (_META_FIELDS, any encoding shared by both), -1 where there is none."""
    image_key, bank_key = _keys(image_meta, bank_meta)
    if not len(bank_key):
        return np.full(len(image_key), -1, dtype=np.int64)
    order = np.argsort(bank_key, kind="stable")
    at = np.minimum(np.searchsorted(bank_key[order], image_key), len(order) - 1)
    return np.where(bank_key[order][at] == image_key, order[at], -1).astype(np.int64)


# ============================================================================ writer
class DatasetWriter:
    """Writes a dataset file incrementally; the file appears at `path` only when close() succeeds.

    DatasetWriter(path, source="synthetic", cameras=json_text, generator=dict_or_None,
                  bank_rate_hz=None)
    append(images (n,S,S,3) uint8, poses (n,17,3) mm, subject, action, subaction, camera, frame,
           box=None) where the metadata are scalars (shared by the n rows) or length-n sequences
        and box (n,3) is the crop (x0, y0, side) in the full image (None: the square box around
        the projected joints, data.h36m.square_box with data.h36m.BOX_MARGIN).
    append_bank(poses (m,17,3) mm, subject, action, subaction, camera, frame): pose-bank entries
        (only with a bank_rate_hz); close() links each image row to its entry (bank/image_row)
        and fails unless every image row has exactly one entry with an equal pose.
    set_tpose(subject, (17,3)); set_info(name, json_value) for a note attribute; close(). Use as a
    context manager: an exception discards the file.
    """

    def __init__(self, path, source, cameras=None, generator=None, image_size=IMAGE_SIZE,
                 compression="gzip", compression_opts=1, bank_rate_hz=None):
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        if bank_rate_hz is not None:
            bank_step(bank_rate_hz)
        self.path = str(path)
        self.tmp_path = self.path + ".tmp"
        self.image_size = int(image_size)
        self.bank_rate_hz = None if bank_rate_hz is None else float(bank_rate_hz)
        self.n = 0
        self.n_bank = 0
        self._tposes = {}
        self._moments = {}
        directory = os.path.dirname(os.path.abspath(self.path))
        with self._writing():
            os.makedirs(directory, exist_ok=True)
            self._file = h5py.File(self.tmp_path, "w")
        try:
            with self._writing():
                self._start(source, cameras, generator, compression, compression_opts)
        except BaseException:
            self.abort()
            raise

    @contextlib.contextmanager
    def _writing(self):
        """A file-system error (a full disk, a parent that is a file) as a DatasetError naming the
        file being written."""
        try:
            yield
        except OSError as err:
            raise DatasetError(f"{self.path}: cannot write the dataset file "
                               f"({os_reason(err, self.path, self.tmp_path)})") from None

    def _start(self, source, cameras, generator, compression, compression_opts):
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
        f.create_dataset("box", (0, 3), maxshape=(None, 3), dtype=np.float32, chunks=(8192, 3))
        self._create_pose_columns(f)
        if self.bank_rate_hz is not None:
            bank = f.create_group("bank")
            bank.attrs["rate_hz"] = self.bank_rate_hz
            self._create_pose_columns(bank)

    @staticmethod
    def _create_pose_columns(group):
        group.create_dataset("poses", (0, N_JOINTS, 3), maxshape=(None, N_JOINTS, 3), dtype=np.float32,
                             chunks=(4096, N_JOINTS, 3))
        for name, length in _STRING_FIELDS.items():
            group.create_dataset(name, (0,), maxshape=(None,), dtype=f"S{length}", chunks=(8192,))
        for name, dtype in _INT_FIELDS.items():
            group.create_dataset(name, (0,), maxshape=(None,), dtype=dtype, chunks=(8192,))

    def _pose_columns(self, n, poses, subject, action, subaction, camera, frame):
        return _encode_columns(n, poses, subject, action, subaction, camera, frame, self._cameras)

    def _extend(self, group, lo, columns):
        """Write the arrays of `columns` at rows lo.. of the group's datasets of the same names."""
        hi = lo + len(columns["frame"])
        with self._writing():
            for name, value in columns.items():
                group[name].resize(hi, axis=0)
                group[name][lo:hi] = value
        return hi

    def append(self, images, poses, subject, action, subaction, camera, frame, box=None):
        """Append n rows. images (n,S,S,3) uint8; poses (n,17,3) camera coordinates, mm."""
        images = np.asarray(images)
        n = len(images)
        s = self.image_size
        if images.shape != (n, s, s, 3) or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 ({n},{s},{s},3), got {images.dtype} {images.shape}")
        poses, columns = self._pose_columns(n, poses, subject, action, subaction, camera, frame)
        if box is None:
            box = [self._default_box(p, self._cameras[c.decode()]) for p, c in zip(poses, columns["camera"])]
        box = np.asarray(box, dtype=np.float32).reshape(-1, 3)
        if box.shape != (n, 3) or not np.isfinite(box).all() or (box[:, 2] <= 0).any():
            raise ValueError(f"box must be finite ({n},3) with a positive side, got {box.shape}")
        self.n = self._extend(self._file, self.n, dict(columns, images=images, poses=poses, box=box))
        self._accumulate_moments(images, columns["subject"])

    def append_bank(self, poses, subject, action, subaction, camera, frame):
        """Append m pose-bank entries: poses (m,17,3) camera coordinates, mm; metadata as in append."""
        if self.bank_rate_hz is None:
            raise ValueError(f"{self.path}: append_bank needs a writer made with bank_rate_hz")
        poses, columns = self._pose_columns(len(np.asarray(poses)), poses, subject, action, subaction,
                                            camera, frame)
        self.n_bank = self._extend(self._file["bank"], self.n_bank, dict(columns, poses=poses))

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
            name = name.decode()
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

    # The format's own attributes, which set_info cannot replace.
    _OWN_ATTRIBUTES = ("format_version", "source", "joint_names", "parents", "cameras", "generator")

    def set_info(self, name, value):
        """Store value (JSON-serialisable) as the JSON text file attribute `name`: notes beside the
        format that readers may ignore, such as data.prepare_h36m's summary (`preparation`)."""
        if name in self._OWN_ATTRIBUTES:
            raise ValueError(f"{name!r} is an attribute of the format itself, not an info attribute")
        with self._writing():
            self._file.attrs[name] = json.dumps(value, sort_keys=True)

    def close(self):
        """Write the per-subject groups and atomically move the file into place. Returns the path."""
        f = self._file
        present = sorted(set(_decode(f["subject"][:])), key=h36m.ALL_SUBJECTS.index)
        if self.bank_rate_hz is not None:
            present = sorted(set(present) | set(_decode(f["bank/subject"][:])), key=h36m.ALL_SUBJECTS.index)
        missing = [s for s in present if s not in self._tposes]
        if missing:
            self.abort()
            raise ValueError(f"{self.path}: no T pose given for subjects {', '.join(missing)}")
        if self.bank_rate_hz is not None:
            try:
                self._link_bank()
            except ValueError:
                self.abort()
                raise
        try:
            with self._writing():
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
        except DatasetError:
            self.abort()
            raise
        return self.path

    def _link_bank(self):
        """Write bank/image_row: the image row of each bank entry (same metadata), -1 for none."""
        f, bank = self._file, self._file["bank"]
        image_meta = {name: f[name][:] for name in _META_FIELDS}
        bank_meta = {name: bank[name][:] for name in _META_FIELDS}
        entry = _bank_entries(image_meta, bank_meta)
        if (entry < 0).any():
            row = int(np.flatnonzero(entry < 0)[0])
            where = ", ".join(_show(image_meta[k][row]) for k in _META_FIELDS)
            raise ValueError(f"{self.path}: image row {row} ({where}) has no pose-bank entry")
        image_row = np.full(self.n_bank, -1, dtype=np.int64)
        image_row[entry] = np.arange(self.n)
        problem = _bank_problem(self.n, image_meta, f["poses"][:], bank_meta, bank["poses"][:], image_row)
        if problem:
            raise ValueError(f"{self.path}: field '{problem[0]}': {problem[1]}")
        bank.create_dataset("image_row", data=image_row)

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
    None), image_size, bank_rate_hz (float, None without a bank/ group).
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
            # out-of-range values become inf on the cast to float32, which the checks reject
            with np.errstate(over="ignore", invalid="ignore"):
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
            self._fail("format_version", f"expected {FORMAT_VERSION}, got {_show(version)}")
        self.source = str(self._attr("source"))
        if self.source not in SOURCES:
            self._fail("source", f"expected one of {', '.join(SOURCES)}, got {self.source!r}")
        if self._json_attr("joint_names") != list(h36m.JOINT_NAMES):
            self._fail("joint_names", f"expected the {N_JOINTS} Human3.6M joints in data.h36m order")
        if np.asarray(self._attr("parents")).tolist() != list(h36m.PARENTS):
            self._fail("parents", f"expected {list(h36m.PARENTS)}")
        self.camera_info = self._json_attr("cameras")
        try:
            self.cameras = {cid: h36m.Camera.from_dict(d) for cid, d in self.camera_info.items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            self._fail("cameras", "expected a JSON object of camera intrinsics (fx, fy, cx, cy, k, p,"
                                  " width, height)")
        self.generator = self._json_attr("generator") if "generator" in f.attrs else None
        if self.generator is not None and not isinstance(self.generator, dict):
            self._fail("generator", "expected a JSON object of generator settings")

        images = self._dataset(f, "images")
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 \
                or images.shape[1] != images.shape[2]:
            self._fail("images", f"expected uint8 (N,S,S,3), got {images.dtype} {images.shape}")
        self.n = self._row_count(f, ("images", "box", "poses") + _META_FIELDS)
        if images.shape[0] != self.n:
            self._fail("images", f"expected {self.n} images as the other fields have rows, got {images.shape[0]}")
        self.image_size = images.shape[1]
        box = self._dataset(f, "box")
        if box.dtype.kind != "f" or box.shape != (self.n, 3):
            self._fail("box", f"expected float ({self.n},3), got {box.dtype} {box.shape}")
        self._box = box[:].astype(np.float32)
        if not (np.isfinite(self._box).all() and (self._box[:, 2] > 0).all()):
            self._fail("box", "expected finite boxes with a positive side")
        self._poses, self._meta = self._pose_columns(f, "", self.n)
        self.subjects, self.actions = self._held(self._meta)
        self._validate_bank()
        self._tposes = {}
        for s in sorted(set(self.subjects) | set(self._bank_subjects), key=h36m.ALL_SUBJECTS.index):
            key = f"tpose/{s}"
            if key not in f:
                self._fail("tpose", f"missing T pose of subject {s}")
            d = f[key]
            t = d[()] if isinstance(d, h5py.Dataset) else None
            if t is None or np.asarray(t).dtype.kind not in "fiu":
                self._fail(key, f"expected a float ({N_JOINTS},3) dataset")
            t = np.asarray(t, dtype=np.float32)
            if t.shape != (N_JOINTS, 3) or not np.isfinite(t).all():
                self._fail(key, f"expected finite ({N_JOINTS},3), got {t.shape}")
            self._tposes[s] = t

    def _row_count(self, group, names):
        """The length most of the datasets `names` of group share: the field checks that follow
        then blame a truncated column, not the others."""
        counts = [self._dataset(group, name).shape[:1] for name in names]
        counts = [c[0] for c in counts if c]
        return max(set(counts), key=counts.count) if counts else 0

    def _dataset(self, group, name):
        path = f"{group.name.strip('/')}/{name}".lstrip("/")
        if name not in group or not isinstance(group[name], h5py.Dataset):
            self._fail(path, "missing dataset")
        return group[name]

    def _pose_columns(self, group, prefix, n):
        """Validated poses (n,17,3) float32 and decoded metadata columns of `group` (the file's rows,
        or the bank's entries); field names in messages get `prefix` ("" or "bank/")."""
        poses = self._dataset(group, "poses")
        if poses.dtype.kind != "f" or poses.shape != (n, N_JOINTS, 3):
            self._fail(prefix + "poses", f"expected float ({n},{N_JOINTS},3), got {poses.dtype} {poses.shape}")
        for name in _STRING_FIELDS:
            d = self._dataset(group, name)
            if d.dtype.kind != "S" or d.shape != (n,):
                self._fail(prefix + name, f"expected fixed-length bytes ({n},), got {d.dtype} {d.shape}")
        for name in _INT_FIELDS:
            d = self._dataset(group, name)
            if d.dtype.kind not in "iu" or d.shape != (n,):
                self._fail(prefix + name, f"expected integers ({n},), got {d.dtype} {d.shape}")
        # Contents: poses finite (read in chunks so a huge file stays bounded in memory).
        out = np.empty((n, N_JOINTS, 3), dtype=np.float32)
        for lo in range(0, n, 65536):
            block = poses[lo:lo + 65536].astype(np.float32)
            bad = ~np.isfinite(block).all(axis=(1, 2))
            if bad.any():
                self._fail(prefix + "poses", f"row {lo + int(np.argmax(bad))} is not finite (NaN or inf)")
            out[lo:lo + len(block)] = block
        meta = {}
        for name in _STRING_FIELDS:
            try:
                meta[name] = _decode(group[name][:])
            except UnicodeDecodeError:
                self._fail(prefix + name, "expected UTF-8 text")
        meta.update({name: group[name][:].astype(np.int64) for name in _INT_FIELDS})
        for s in sorted(set(meta["subject"])):
            if s not in h36m.ALL_SUBJECTS:
                self._fail(prefix + "subject", f"unknown subject {s!r}; expected one of {', '.join(h36m.ALL_SUBJECTS)}")
        for a in sorted(set(meta["action"])):
            if a not in h36m.ACTIONS:
                self._fail(prefix + "action", f"unknown action {a!r}; expected one of {', '.join(h36m.ACTIONS)}")
        for c in sorted(set(meta["camera"])):
            if c not in self.cameras:
                self._fail(prefix + "camera", f"camera {c!r} has no entry in the cameras attribute")
        return out, meta

    @staticmethod
    def _held(meta):
        """(subjects, actions) present in metadata columns, in ALL_SUBJECTS / ACTIONS order."""
        subjects, actions = set(meta["subject"]), set(meta["action"])
        return (tuple(s for s in h36m.ALL_SUBJECTS if s in subjects),
                tuple(a for a in h36m.ACTIONS if a in actions))

    def _validate_bank(self):
        """Read and check the optional bank/ group; without one, the image rows are the bank."""
        f = self._file
        self._has_bank = "bank" in f
        if not self._has_bank:
            self.bank_rate_hz = None
            self._bank_poses, self._bank_meta = self._poses, self._meta
            self._bank_rows = np.arange(self.n, dtype=np.int64)
            self._bank_subjects, self._bank_actions = self.subjects, self.actions
            return
        bank = f["bank"]
        if not isinstance(bank, h5py.Group):
            self._fail("bank", "expected a group")
        rate = bank.attrs.get("rate_hz")
        try:
            bank_step(float(rate))
        except (TypeError, ValueError):
            self._fail("bank/rate_hz", f"expected a rate that divides {h36m.FPS} Hz, got {_show(rate)}")
        self.bank_rate_hz = float(rate)
        rows = self._dataset(bank, "image_row")
        if rows.dtype.kind not in "iu" or rows.ndim != 1:
            self._fail("bank/image_row", f"expected integers (M,), got {rows.dtype} {rows.shape}")
        m = self._row_count(bank, ("image_row", "poses") + _META_FIELDS)
        if rows.shape[0] != m:
            self._fail("bank/image_row", f"expected {m} entries as the other bank fields, got {rows.shape[0]}")
        self._bank_poses, self._bank_meta = self._pose_columns(bank, "bank/", m)
        self._bank_rows = rows[:].astype(np.int64)
        problem = _bank_problem(self.n, self._meta, self._poses, self._bank_meta, self._bank_poses,
                                self._bank_rows)
        if problem:
            self._fail(*problem)
        self._bank_subjects, self._bank_actions = self._held(self._bank_meta)

    # ------------------------------------------------------------------ access
    def select(self, subjects=None, actions=None, cameras=None):
        """Sorted int64 row indices of the given subjects / actions / cameras (None = all).

        Each argument is a name, a comma-separated string or a list; subjects may also be the
        groups train / test / all (those of the group that the file holds), actions raw aliases.
        A name the file does not hold raises DatasetError listing what it holds.
        """
        return self._select(self._meta, self.subjects, self.actions, subjects, actions, cameras)

    def _select(self, meta, held_subjects, held_actions, subjects, actions, cameras):
        keep = np.ones(len(meta["frame"]), dtype=bool)
        if subjects is not None:
            keep &= np.isin(meta["subject"], self._subject_names(subjects, held_subjects))
        if actions is not None:
            keep &= np.isin(meta["action"], [self._action_name(a, held_actions) for a in _items(actions)])
        if cameras is not None:
            held = sorted(set(meta["camera"]))
            absent = [c for c in _items(cameras) if c not in held]
            if absent:
                raise DatasetError(f"{self.path}: no camera {', '.join(absent)} in the file; it holds "
                                   f"{', '.join(held)}")
            keep &= np.isin(meta["camera"], _items(cameras))
        return np.flatnonzero(keep).astype(np.int64)

    def _subject_names(self, subjects, held_subjects):
        groups = {"train": h36m.TRAIN_SUBJECTS, "test": h36m.TEST_SUBJECTS, "all": h36m.ALL_SUBJECTS}
        names = []
        for item in _items(subjects, separators=r",\s"):
            if item.lower() in groups:
                group = groups[item.lower()]
                held = [s for s in group if s in held_subjects]
                if not held:
                    raise DatasetError(f"{self.path}: no {item} subject ({', '.join(group)}) in the file; "
                                       f"it holds {', '.join(held_subjects)}")
                names.extend(held)
                continue
            try:
                name = h36m.parse_subjects([item])[0]
            except ValueError as e:
                raise DatasetError(f"{self.path}: {e}; the file holds {', '.join(held_subjects)}") from None
            if name not in held_subjects:
                raise DatasetError(f"{self.path}: no subject {name} in the file; it holds {', '.join(held_subjects)}")
            names.append(name)
        return names

    def _action_name(self, raw, held_actions):
        try:
            name = h36m.canonical_action(raw)
        except ValueError:
            name = None
        if name not in held_actions:
            raise DatasetError(f"{self.path}: no action {raw!r} in the file; it holds {', '.join(held_actions)}")
        return name

    def _index(self, idx, n=None):
        n = self.n if n is None else n
        if idx is None:
            return np.arange(n)
        idx = np.asarray(idx)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise DatasetError(f"{self.path}: indices must be a 1-D integer array, got {idx.dtype} {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise DatasetError(f"{self.path}: index out of range [0, {n})")
        return idx.astype(np.int64)

    def poses(self, idx=None):
        """float32 (n,17,3) poses in camera coordinates, mm (absolute, not root-relative)."""
        return self._poses[self._index(idx)].copy()

    def metadata(self, idx=None):
        """dict of (n,) arrays: subject (str), action (str), subaction (int), camera (str), frame (int)."""
        idx = self._index(idx)
        return {name: self._meta[name][idx] for name in _META_FIELDS}

    # ------------------------------------------------------------------ the pose bank
    # Without a bank/ group the image rows are the bank (bank index = row index, rate None), so
    # callers never branch on has_bank.
    @property
    def has_bank(self):
        """True when the file holds a bank/ group (poses beyond the image rows)."""
        return self._has_bank

    def bank_select(self, subjects=None, actions=None, cameras=None):
        """Sorted int64 indices into the pose bank; arguments and errors as in select()."""
        return self._select(self._bank_meta, self._bank_subjects, self._bank_actions, subjects, actions,
                            cameras)

    def bank_poses(self, bidx=None):
        """float32 (n,17,3) bank poses in camera coordinates, mm (absolute, as poses())."""
        return self._bank_poses[self._index(bidx, len(self._bank_rows))].copy()

    def bank_metadata(self, bidx=None):
        """dict of (n,) arrays of the bank entries, as metadata()."""
        bidx = self._index(bidx, len(self._bank_rows))
        return {name: self._bank_meta[name][bidx] for name in _META_FIELDS}

    def bank_image_rows(self, bidx=None):
        """int64 (n,): the image row showing each bank entry, -1 for a pose-only entry."""
        return self._bank_rows[self._index(bidx, len(self._bank_rows))].copy()

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

    def extrinsics(self, subject, camera):
        """World-to-camera (R (3,3), T (3,) mm) of subject's session, x_cam = R @ (x_world - T):
        the file's own calibration (its cameras attribute, the one its poses were made with:
        data.h36m's built-in values or the release's metadata.xml), else data.h36m.extrinsics."""
        entry = self.camera_info.get(str(camera)) if isinstance(self.camera_info, dict) else None
        entry = entry.get("extrinsics") if isinstance(entry, dict) else None
        entry = entry.get(str(subject)) if isinstance(entry, dict) else None
        if entry is None:
            return h36m.extrinsics(subject, camera)
        try:
            R, T = np.asarray(entry["R"], dtype=np.float64), np.asarray(entry["T"], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            R = T = np.zeros(0)
        if R.shape != (3, 3) or T.shape != (3,) or not (np.isfinite(R).all() and np.isfinite(T).all()):
            self._fail("cameras", f"camera {camera}: extrinsics of {subject}: expected finite R (3,3) and T (3,)")
        return R, T

    def image_moments(self, subjects):
        """Stored exact RGB sums of `subjects`: (count, sum (3,), outer (3,3)), or None if absent."""
        count, total, outer = 0, np.zeros(3), np.zeros((3, 3))
        for s in subjects:
            key = f"image_moments/{s}"
            if key not in self._file:
                return None
            g = self._file[key].attrs
            values = [np.asarray(g.get(name)) for name in ("count", "sum", "outer")]
            if any(v.dtype.kind not in "iuf" or not np.isfinite(v).all() for v in values) \
                    or [v.shape for v in values] != [(), (3,), (3, 3)] or values[0] < 0:
                self._fail(key, "expected finite attributes count (), sum (3,) and outer (3,3)")
            count += int(values[0])
            total = total + values[1].astype(np.float64)
            outer = outer + values[2].astype(np.float64)
        return count, total, outer

    def fingerprint(self):
        """A digest (hex) of what a training run reads but the images: the source and generator
        attributes, the poses and metadata of the rows and of the pose bank. Equal for a file
        regenerated identically, different when a pose or label changes; reads no image."""
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps([self.source, self.generator], sort_keys=True).encode())
        for poses, meta in ((self._poses, self._meta), (self._bank_poses, self._bank_meta)):
            h.update(np.ascontiguousarray(poses).tobytes())
            for name in _META_FIELDS:
                h.update("\0".join(map(str, meta[name])).encode() + b"\1")
        h.update(self._bank_rows.tobytes())
        return h.hexdigest()

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


# ============================================================================ replacing the bank
def replace_bank(path, poses, meta, rate_hz, out=None, tolerance_mm=None, tposes=None, info=None):
    """Write the dataset file `path` again with a new pose bank (bank/): poses (M,17,3) camera
    coordinates, mm, absolute, metadata meta {subject, action, subaction, camera, frame} (M,) at
    rate_hz (frames multiples of 50 / rate_hz), to `out` (None: `path` itself). Everything but
    bank/ is copied as stored (HDF5 object copies: the images are not decoded); the new file is
    validated, then moved into place (a temporary beside it, as DatasetWriter): an error leaves the
    old file as it was.

    The format's link rule holds: every image row has one entry, with its pose. An entry with an
    image row's five metadata fields takes that row's pose (the image's label); the largest change
    is max_difference_mm (per-joint distance), and more than tolerance_mm is a DatasetError (the
    poses are not those of the images' sequences: another sub-action numbering, other cameras).
    An image row without an entry gets one from its own pose. Every image row's frame must lie
    on the new rate's grid. tposes: {subject: (17,3)} for bank subjects the file has no T pose of;
    info: a JSON value stored as the text file attribute `bank_source` (a dict gets the summary's
    counts added).

    Returns {"entries": M', "given": M, "linked": image rows matched, "from_images": entries made
    from image rows, "max_difference_mm", "mean_difference_mm"} (differences None when none linked).
    """
    out = os.fspath(path if out is None else out)
    path = os.fspath(path)
    step = bank_step(rate_hz)
    with PoseDataset(path) as ds:
        image_meta, image_poses, file_cameras = ds.metadata(), ds.poses(), list(ds.cameras)
    off = np.flatnonzero(image_meta["frame"] % step)
    if len(off):
        r = int(off[0])
        raise DatasetError(f"{path}: image row {r} is frame {image_meta['frame'][r]}, not on the grid of a "
                           f"{float(rate_hz):g} Hz bank (every {step}th frame): choose a rate whose step divides "
                           "the images' frames")
    try:
        poses, cols = _encode_columns(len(np.asarray(poses)), poses, *(meta[k] for k in _META_FIELDS), file_cameras)
    except (KeyError, ValueError) as err:
        raise DatasetError(f"{path}: the new pose bank: {err}") from None
    given = len(poses)
    bank_meta = {k: _decode(cols[k]) if k in _STRING_FIELDS else cols[k].astype(np.int64) for k in _META_FIELDS}
    entry = _bank_entries(image_meta, bank_meta)
    linked = np.flatnonzero(entry >= 0)
    diff = np.linalg.norm(poses[entry[linked]] - image_poses[linked], axis=-1).max(axis=-1) if len(linked) \
        else np.zeros(0)
    if tolerance_mm is not None and len(diff) and diff.max() > tolerance_mm:
        r = int(linked[np.argmax(diff)])
        where = ", ".join(str(image_meta[k][r]) for k in _META_FIELDS)
        raise DatasetError(f"{path}: image row {r} ({where}): the new bank's pose of that frame is "
                           f"{diff.max():.1f} mm from the row's (a joint), more than {tolerance_mm:g} mm: not the same "
                           "sequence (sub-action numbering, cameras, frames)?")
    poses = poses.copy()
    poses[entry[linked]] = image_poses[linked]
    alone = np.flatnonzero(entry < 0)
    poses = np.concatenate([poses, image_poses[alone]])
    bank_meta = {k: np.concatenate([bank_meta[k], np.asarray(image_meta[k])[alone]]) for k in _META_FIELDS}
    # in sequence order: subject, action, sub-action, camera, frame
    order = np.lexsort([bank_meta["frame"], bank_meta["camera"].astype(str), bank_meta["subaction"],
                        [h36m.ACTIONS.index(a) for a in bank_meta["action"]],
                        [h36m.ALL_SUBJECTS.index(x) for x in bank_meta["subject"]]])
    poses, bank_meta = poses[order], {k: v[order] for k, v in bank_meta.items()}
    entry = _bank_entries(image_meta, bank_meta)
    image_row = np.full(len(poses), -1, dtype=np.int64)
    image_row[entry] = np.arange(len(entry))
    problem = _bank_problem(len(entry), image_meta, image_poses, bank_meta, poses, image_row)
    if problem:
        raise DatasetError(f"{path}: the new pose bank: field '{problem[0]}': {problem[1]}")
    _, cols = _encode_columns(len(poses), poses, *(bank_meta[k] for k in _META_FIELDS), file_cameras)
    summary = {"entries": int(len(poses)), "given": int(given), "linked": int(len(linked)),
               "from_images": int(len(alone)),
               "max_difference_mm": float(diff.max()) if len(diff) else None,
               "mean_difference_mm": float(diff.mean()) if len(diff) else None}
    if isinstance(info, dict):
        info = dict(info, **summary)

    tmp = out + ".tmp"
    try:
        try:
            with h5py.File(path, "r") as src, h5py.File(tmp, "w") as dst:
                for key, value in src.attrs.items():
                    dst.attrs[key] = value
                for name in src:
                    if name != "bank":
                        src.copy(src[name], dst, name=name)
                for subject, tpose in (tposes or {}).items():
                    if f"tpose/{subject}" not in dst:
                        dst.create_dataset(f"tpose/{subject}", data=np.asarray(tpose, dtype=np.float32))
                lacking = [x for x in h36m.ALL_SUBJECTS if x in set(bank_meta["subject"]) and f"tpose/{x}" not in dst]
                if lacking:
                    raise DatasetError(f"{path}: no T pose of {', '.join(lacking)}, whose poses the new bank holds "
                                       "(give tposes)")
                bank = dst.create_group("bank")
                bank.attrs["rate_hz"] = float(rate_hz)
                DatasetWriter._create_pose_columns(bank)
                for name, value in dict(cols, poses=poses).items():
                    bank[name].resize(len(poses), axis=0)
                    bank[name][:] = value
                bank.create_dataset("image_row", data=image_row)
                if info is not None:
                    dst.attrs["bank_source"] = json.dumps(info, sort_keys=True)
            PoseDataset(tmp).close()
            os.replace(tmp, out)
        except OSError as err:
            raise DatasetError(f"{out}: cannot write the dataset file ({os_reason(err, out, tmp)})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return summary

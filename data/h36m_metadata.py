"""The Human3.6M release's `metadata.xml`: cameras and the sequence table, checked against data.h36m.

The file ships with the release's "Visualisation and large scale prediction software" (e.g.
`Release-v1.2/metadata.xml`). What this reader uses of it, as the public converters read it
(MMPose `tools/dataset_converters/preprocess_h36m.py`, `_load_metadata` / `_get_camera_params`;
PosePile `posepile/ds/h36m/main.py`, `get_cameras`; anibali/h36m-fetch `metadata.py`):

* `<w0>`: the calibration, one bracketed list of 300 numbers. The first 264 are 4 cameras x 11
  subjects (S1..S11) x 6: three rotation angles (radians) and the camera centre in world
  coordinates (mm); entry `6 * (11 * camera + subject - 1)` starts camera `camera`'s block for
  subject `subject`. The world-to-camera rotation is `Rx(a0) @ Ry(a1) @ Rz(a2)` (elementary
  right-handed rotations; PosePile's `euler2mat(a0, a1, a2, 'rxyz')`, and MMPose's
  `(R_x @ R_y @ R_z).T` with its sign flips, transposed back by its camera-to-world convention).
  The last 36 are per camera 9 intrinsics: focal (fx, fy), centre (cx, cy), radial (k1, k2, k3),
  tangential (p1, p2). Image sizes are not in the file (data.h36m has them).
* `<dbcameras><index2id>`: the camera ids in the order of the blocks (else data.h36m.CAMERA_IDS).
* `<mapping>`: a table whose first row names the subjects and whose next 32 rows are
  (action id, sub-action id, the file-name prefix of each subject), e.g. S9's (5, 2) is
  "Greeting". Action 1 is the "_ALL" recordings.
* `<actionnames>`: the action names in id order.

read_metadata(path) -> Metadata; compare(metadata) lists where it and data.h36m's built-in values
differ; Metadata.cameras_json(subjects) is the dataset file's `cameras` attribute built from it.
Every problem with the file is a DatasetError of one line naming the file and the field.
"""
import json
import re
import xml.etree.ElementTree as ET

import numpy as np

from data import h36m
from data.dataset import DatasetError

N_SUBJECTS = 11                     # the calibration covers S1..S11 (S2, S3, S4, S10 included)
N_EXTRINSIC = 6
N_INTRINSIC = 9
N_W0 = len(h36m.CAMERA_IDS) * (N_SUBJECTS * N_EXTRINSIC + N_INTRINSIC)   # 300

# Agreement with the built-in calibration (data.h36m, float32 values derived from the same
# file): rotation angle, camera centre, focal length and centre, distortion coefficients.
TOLERANCE = {"rotation_deg": 0.01, "centre_mm": 0.5, "intrinsics_px": 0.01, "distortion": 1e-6}


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def angles_to_rotation(a):
    """The release's three extrinsic angles (radians) -> world-to-camera rotation (3,3)."""
    return _rx(a[0]) @ _ry(a[1]) @ _rz(a[2])


def rotation_to_angles(R):
    """Inverse of angles_to_rotation (for writing test files): R = Rx(a) Ry(b) Rz(c) -> (a, b, c)."""
    R = np.asarray(R, dtype=np.float64)
    b = np.arcsin(np.clip(R[0, 2], -1.0, 1.0))
    a = np.arctan2(-R[1, 2], R[2, 2])
    c = np.arctan2(-R[0, 1], R[0, 0])
    return np.array([a, b, c])


class Metadata:
    """What read_metadata found.

    path; camera_ids (4, block order); intrinsics {camera id: h36m.Camera} (sizes from data.h36m);
    extrinsics {(subject, camera id): (R world-to-camera (3,3), T camera centre (3,) mm)};
    mapping {subject: {(action id, sub-action id): file-name prefix}} ({} when the table is absent);
    action_names {action id: name}.
    """

    def __init__(self, path, camera_ids, intrinsics, extrinsics, mapping, action_names):
        self.path, self.camera_ids = path, camera_ids
        self.intrinsics, self.extrinsics = intrinsics, extrinsics
        self.mapping, self.action_names = mapping, action_names

    def file_prefix(self, subject, action_id, subaction_id):
        """The file-name prefix ("Greeting", "SittingDown 1") of a numbered sequence, or None."""
        return self.mapping.get(subject, {}).get((str(action_id), str(subaction_id)))

    def cameras_json(self, subjects=h36m.ALL_SUBJECTS):
        """The dataset file's `cameras` attribute (data.h36m.cameras_json's layout) from this file."""
        out = {}
        for cid in h36m.CAMERA_IDS:
            entry = self.intrinsics[cid].to_dict()
            entry["extrinsics"] = {s: {"R": self.extrinsics[(s, cid)][0].tolist(),
                                       "T": self.extrinsics[(s, cid)][1].tolist()} for s in subjects}
            out[cid] = entry
        return json.dumps(out)


def _fail(path, field, message):
    raise DatasetError(f"{path}: field '{field}': {message}")


def _numbers(path, text):
    body = (text or "").strip()
    if body.startswith("["):
        body = body[1:]
    if body.endswith("]"):
        body = body[:-1]
    items = [t for t in re.split(r"[\s,;]+", body) if t]
    try:
        values = np.array([float(t) for t in items], dtype=np.float64)
    except ValueError:
        bad = next(t for t in items if not _is_number(t))
        _fail(path, "w0", f"expected numbers, got {bad[:20]!r}")
    if len(values) != N_W0:
        _fail(path, "w0", f"expected {N_W0} numbers (4 cameras x {N_SUBJECTS} subjects x {N_EXTRINSIC} "
                          f"extrinsics, then 4 x {N_INTRINSIC} intrinsics), got {len(values)}")
    if not np.isfinite(values).all():
        _fail(path, "w0", "expected finite numbers (NaN or inf found)")
    return values


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_metadata(path):
    """Parse metadata.xml -> Metadata. A missing or malformed file is a DatasetError of one line."""
    path = str(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    except ET.ParseError as e:
        raise DatasetError(f"{path}: not a valid XML file ({e})") from None
    w0 = root.find("w0")
    if w0 is None:
        _fail(path, "w0", "missing (the release's calibration vector)")
    values = _numbers(path, w0.text)

    index2id = root.find("dbcameras/index2id")
    camera_ids = tuple(h36m.CAMERA_IDS) if index2id is None else tuple((e.text or "").strip() for e in index2id)
    if sorted(camera_ids) != sorted(h36m.CAMERA_IDS):
        _fail(path, "dbcameras/index2id", f"expected the cameras {', '.join(h36m.CAMERA_IDS)}, "
                                          f"got {', '.join(camera_ids)[:80]}")
    extrinsic = values[:len(camera_ids) * N_SUBJECTS * N_EXTRINSIC].reshape(len(camera_ids), N_SUBJECTS, N_EXTRINSIC)
    intrinsic = values[len(camera_ids) * N_SUBJECTS * N_EXTRINSIC:].reshape(len(camera_ids), N_INTRINSIC)
    intrinsics, extrinsics = {}, {}
    for i, cid in enumerate(camera_ids):
        f, c, k, p = np.split(intrinsic[i], (2, 4, 7))
        built_in = h36m.CAMERAS[cid]
        if not (f > 0).all():
            _fail(path, "w0", f"camera {cid}: expected positive focal lengths, got {f.tolist()}")
        intrinsics[cid] = h36m.Camera(cid, f[0], f[1], c[0], c[1], k, p, built_in.width, built_in.height)
        for j in range(N_SUBJECTS):
            extrinsics[(f"S{j + 1}", cid)] = (angles_to_rotation(extrinsic[i, j, :3]), extrinsic[i, j, 3:].copy())

    mapping = {}
    table = root.find("mapping")
    if table is not None:
        rows = [[(td.text or "").strip() for td in tr] for tr in table]
        if rows:
            subjects = rows[0][2:]
            mapping = {s: {} for s in subjects}
            for row in rows[1:33]:
                if len(row) < 2 + len(subjects):
                    _fail(path, "mapping", f"expected {2 + len(subjects)} cells per row, got {len(row)}")
                for s, prefix in zip(subjects, row[2:]):
                    mapping[s][(row[0], row[1])] = prefix
    names = root.find("actionnames")
    action_names = {} if names is None else {str(i + 1): (e.text or "").strip() for i, e in enumerate(names)}
    return Metadata(path, camera_ids, intrinsics, extrinsics, mapping, action_names)


def compare(metadata, subjects=h36m.ALL_SUBJECTS, tolerance=TOLERANCE):
    """Where metadata and data.h36m's built-in calibration differ beyond `tolerance`: a list of
    dicts {camera, subject (None for intrinsics), what, difference, tolerance}, empty when they agree.

    what: "rotation_deg" (angle of R_meta R_builtin^T), "centre_mm" (|T_meta - T_builtin|),
    "intrinsics_px" (largest difference of fx, fy, cx, cy), "distortion" (of k1 k2 k3 p1 p2).
    """
    out = []

    def check(camera, subject, what, value):
        if not value <= tolerance[what]:
            out.append({"camera": camera, "subject": subject, "what": what, "difference": float(value),
                        "tolerance": tolerance[what]})

    for cid in h36m.CAMERA_IDS:
        mine, theirs = metadata.intrinsics[cid], h36m.CAMERAS[cid]
        check(cid, None, "intrinsics_px", max(abs(mine.fx - theirs.fx), abs(mine.fy - theirs.fy),
                                              abs(mine.cx - theirs.cx), abs(mine.cy - theirs.cy)))
        check(cid, None, "distortion", float(np.abs(np.subtract(mine.k + mine.p, theirs.k + theirs.p)).max()))
        for s in subjects:
            R, T = metadata.extrinsics[(s, cid)]
            R0, T0 = h36m.extrinsics(s, cid)
            cos = np.clip((np.trace(R @ R0.T) - 1) / 2, -1.0, 1.0)
            check(cid, s, "rotation_deg", float(np.degrees(np.arccos(cos))))
            check(cid, s, "centre_mm", float(np.linalg.norm(T - T0)))
    return out


def write_metadata(path, cameras=None, extrinsics=None, mapping=None):
    """Write a metadata.xml in the release's layout from data.h36m's values (or the given ones):
    for tests and for checking this reader; the release's own file is what users pass.

    cameras {id: h36m.Camera}; extrinsics {(subject, id): (R, T)} for S1, S5, S6, S7, S8, S9, S11
    (the subjects without built-in values get the identity at the origin); mapping as Metadata's.
    """
    cameras = cameras or h36m.CAMERAS
    values = []
    for cid in h36m.CAMERA_IDS:
        for j in range(N_SUBJECTS):
            s = f"S{j + 1}"
            if extrinsics is not None and (s, cid) in extrinsics:
                R, T = extrinsics[(s, cid)]
            elif s in h36m.ALL_SUBJECTS:
                R, T = h36m.extrinsics(s, cid)
            else:
                R, T = np.eye(3), np.zeros(3)
            values += list(rotation_to_angles(R)) + list(np.asarray(T, dtype=np.float64))
    for cid in h36m.CAMERA_IDS:
        cam = cameras[cid]
        values += [cam.fx, cam.fy, cam.cx, cam.cy, *cam.k, *cam.p]
    root = ET.Element("h36m")
    if mapping:
        subjects = list(mapping)
        table = ET.SubElement(root, "mapping")
        head = ET.SubElement(table, "tr")
        for text in ["", ""] + subjects:
            ET.SubElement(head, "td").text = text
        keys = sorted({k for m in mapping.values() for k in m}, key=lambda k: (int(k[0]), int(k[1])))
        for key in keys:
            tr = ET.SubElement(table, "tr")
            for text in [key[0], key[1]] + [mapping[s].get(key, "") for s in subjects]:
                ET.SubElement(tr, "td").text = text
    cams = ET.SubElement(ET.SubElement(root, "dbcameras"), "index2id")
    for cid in h36m.CAMERA_IDS:
        ET.SubElement(cams, "id").text = cid
    ET.SubElement(root, "w0").text = "[" + " ".join(repr(float(v)) for v in values) + "]"
    ET.ElementTree(root).write(path)
    return str(path)

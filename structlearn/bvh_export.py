"""BVH export of the StructNet-Avg(A)-APF poses: run_eval.py --export-bvh DIR (one file per
evaluated (subject, action, sub-action, camera) sequence, its images in frame order) and
run_predict.py --export-bvh DIR (one file per folder of frames). The file format is apf.bvh's;
DIR/sequences.json lists the files with what BVH has no place for (units, axes, frame rate,
which rows and frames, the skeleton).

The APF's poses are valid poses of the subject's skeleton; their joint angles are recovered by
Skeleton.inverse (apf.bvh.angles_of_poses), which reproduces them to float32 rounding (the
largest difference is in the JSON as max_joint_error_mm). Poses are root-relative camera
coordinates: the files turn them to X right, Y up, Z toward the camera (apf.bvh.CAMERA_TO_BVH),
and their root translation is zero.
"""
import json
import os
import tempfile

import numpy as np

from apf import bvh
from data import h36m
from data.files import named_error, write_text_atomic

from .evaluate import method_name
from .trained_run import EvalError

MANIFEST = "sequences.json"
AXES = "X right, Y up, Z toward the camera (camera coordinates x, -y, -z)"
ROOT_NOTE = "zero: the poses are root-relative (the Hip joint at the origin in every frame)"


def prepare_directory(directory):
    """Make the output folder and check that a file can be written there, before the long part of
    a run. OSError naming the folder."""
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        raise named_error(err, directory) from None


def frame_rate(frames, fps=h36m.FPS):
    """(rate in Hz, evenly spaced) of a sequence's sorted frame indices counted at fps Hz: fps over
    their spacing; the mean spacing when it varies (a BVH file has one frame time); fps for a
    single frame."""
    f = np.asarray(frames, dtype=np.int64)
    if len(f) < 2 or f[-1] == f[0]:
        return float(fps), len(f) < 2
    d = np.diff(f)
    return float(fps) * (len(f) - 1) / float(f[-1] - f[0]), bool(np.all(d == d[0]))


def _joint_nodes():
    return {j: node if kind == "joint" else f"End Site of {node}" for j, (kind, node) in bvh.JOINT_NODE.items()}


def _write(directory, name, skeleton, poses, fps):
    try:
        angles, err = bvh.angles_of_poses(skeleton, poses)
        bvh.write_bvh(os.path.join(directory, name), skeleton, angles, fps, world=bvh.CAMERA_TO_BVH)
    except ValueError as e:
        raise EvalError(f"{os.path.join(directory, name)}: {e}") from None
    return err


def _manifest(directory, method, rate_note, records, extra):
    doc = {"format": "BVH (apf/bvh.py): hierarchy of the 17 Human3.6M joints with the helper joints "
                     + ", ".join(bvh.HELPER_NODES) + " (zero offsets), End Sites for the leaves",
           "poses": method, "units": "mm (offsets, root position), degrees (rotations)",
           "euler_order": bvh.EULER_ORDER,
           "rotation": "local R = " + " ".join(f"R{a.lower()}" for a in bvh.EULER_ORDER) + " (the CHANNELS order)",
           "axes": AXES, "rest_pose": "the skeleton's T pose standing along +Y, facing +Z, left arm along +X",
           "root_translation": ROOT_NOTE, "frame_rate": rate_note, "joints": _joint_nodes(), **extra,
           "sequences": records}
    path = os.path.join(directory, MANIFEST)
    write_text_atomic(path, json.dumps(doc, indent=1) + "\n")
    return path


def export_evaluation(directory, output, ev, say=print):
    """One BVH file per (subject, action, sub-action, camera) sequence of the evaluated images,
    in frame order, of output.predictions["apf"] (Evaluator.run with keep_mode="apf") on each
    test subject's skeleton (Evaluator.skeletons, the APF's). The frame time is the spacing of the
    images' frame indices at h36m.FPS = 50 Hz. Returns the number of files."""
    if "apf" not in output.predictions:
        raise EvalError("--export-bvh needs the StructNet-Avg(A)-APF poses (mode apf)")
    poses = output.predictions["apf"]
    meta = ev.dataset.metadata(output.rows)
    keys = list(zip(meta["subject"].tolist(), meta["action"].tolist(), meta["subaction"].tolist(),
                    meta["camera"].tolist()))
    skeletons = ev.skeletons(sorted(set(meta["subject"].tolist()), key=h36m.ALL_SUBJECTS.index))
    groups = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    records, uneven = [], 0
    for (subject, action, subaction, camera), pos in sorted(groups.items(), key=lambda kv: kv[1][0]):
        pos = np.array(pos)[np.argsort(meta["frame"][pos], kind="stable")]
        frames = meta["frame"][pos]
        fps, even = frame_rate(frames)
        uneven += not even
        name = f"{subject}_{action}_{subaction}_{camera}.bvh"
        err = _write(directory, name, skeletons[subject], poses[pos], fps)
        records.append({"file": name, "subject": subject, "action": action, "subaction": int(subaction),
                        "camera": camera, "frames": frames.tolist(), "rows": output.rows[pos].tolist(),
                        "fps": fps, "frame_time_s": 1.0 / fps, "evenly_spaced": even,
                        "max_joint_error_mm": err})
    rate_note = (f"frame indices count {h36m.FPS} Hz frames; each file's frame time is the spacing of its "
                 "images' frame indices (their mean spacing where it varies: evenly_spaced false)")
    path = _manifest(directory, method_name("apf", output.A), rate_note, records,
                     {"skeleton": "each test subject's T-pose bone lengths (the APF's template)"})
    if uneven:
        say(f"note: {uneven} of {len(records)} BVH sequences have unevenly spaced frames (their images' frame "
            "indices; --max-images takes a subset): their frame time is the mean spacing")
    say(f"wrote {len(records)} BVH files of {method_name('apf', output.A)} poses to {directory} ({path})")
    return len(records)


def export_predictions(directory, sequences, files, poses, skeleton, fps, A, skeleton_note, say=print):
    """One BVH file per sequence [(name, positions in files and poses)] of predicted APF poses
    (N, 17, 3) of the images files (N,) on skeleton, at fps frames per second. Returns the number
    of files."""
    records = []
    for name, pos in sequences:
        pos = np.asarray(pos, dtype=np.int64)
        err = _write(directory, name + ".bvh", skeleton, poses[pos], fps)
        records.append({"file": name + ".bvh", "images": [files[i] for i in pos], "fps": float(fps),
                        "frame_time_s": 1.0 / fps, "max_joint_error_mm": err})
    path = _manifest(directory, method_name("apf", A), f"{fps:g} frames per second (--bvh-fps)", records,
                     {"skeleton": skeleton_note})
    say(f"wrote {len(records)} BVH file(s) of {method_name('apf', A)} poses to {directory} ({path})")
    return len(records)

"""How well the kinematic model (data.skeleton) fits the poses of a dataset file.

    python -m data.skeleton --check FILE.h5 [--max-frames N] [--threshold MM] [--tolerance DEG]
                                            [--source bank|images] [--json OUT.json]

For every pose p checked (camera coordinates, mm) and its subject's skeleton (the bone lengths of
the file's T pose, `Skeleton(bone_lengths(tpose))`, the skeleton the particle filter uses):

* the IK->FK round trip q = forward(inverse(p)) (the clipped inverse, as the project uses it) and
  its MPJPE against the root-relative p, mm per frame, 17 joints: mean, median, 90th and 99th
  percentile, max, and the share of frames above --threshold (3 mm by default);
* the same against p with each bone rescaled to the skeleton's length ("same lengths"): the part
  of the error that the model's degrees of freedom and limits make, not the bone lengths;
* the raw IK angles, inverse(p, clip=False), before any clipping: the share of frames with an
  angle outside ANGLE_LIMITS or a shoulder swing outside SWING_CONES (by more than --tolerance
  degrees), and per angle its range (degrees) against its limits and its share of frames outside.

Per subject and per (subject, action), and overall. The poses are the pose bank's (every pose at
the bank's rate; a file without a bank: the image rows), one camera per sequence (the cameras
see the same motion, and the root absorbs any rotation, so the others would repeat the figures),
or with --source images the image rows, every camera. --max-frames N checks N poses evenly spaced
over them (every sequence in proportion). --json writes the report ("-": to stdout).
"""
import argparse
import json
import sys

import numpy as np

from data import flags, h36m
from data.dataset import DatasetError, PoseDataset
from data.files import write_text_atomic
from data.skeleton import (ANGLE_LIMITS, ANGLE_NAMES, N_ANGLES, SWING_CONES, Skeleton, angle_index, bone_lengths,
                           within_limits)

THRESHOLD_MM = 3.0
# An angle counts as outside its limit when beyond it by more than this. Stored poses are float32
# (about 5e-4 mm at 4.5 m from the camera): on the synthetic file, whose motions are clipped to
# the limits, angles at a limit read up to 4e-6 rad (0.0002 degrees) beyond it.
TOLERANCE_DEG = 0.01
_PARENTS = np.array(h36m.PARENTS)
_CHUNK = 20000
_DEG = 180.0 / np.pi
# names of the cone limits, reported beside the angles
CONE_NAMES = tuple(f"{a.split('_')[0]}_swing_cone" for (a, _), _ in SWING_CONES)


def with_lengths(poses, lengths):
    """Poses (n,17,3) with every bone rescaled to lengths (17,) (directions kept), root at the origin."""
    poses = np.asarray(poses, dtype=np.float64)
    out = np.zeros_like(poses)
    for j in range(1, h36m.N_JOINTS):       # parents come before their children
        p = _PARENTS[j]
        d = poses[:, j] - poses[:, p]
        n = np.linalg.norm(d, axis=-1, keepdims=True)
        out[:, j] = out[:, p] + lengths[j] * d / np.maximum(n, 1e-12)
    return out


def frame_checks(skeleton, poses, tolerance_deg=TOLERANCE_DEG):
    """Per frame of poses (n,17,3), camera coordinates mm, against skeleton (an angle is outside
    when beyond its limit by more than tolerance_deg):
    dict of error (n,) mm (round trip vs the root-relative pose), error_same_lengths (n,) mm,
    angles (n, N_ANGLES) raw IK radians, outside (n,) bool (some limit or cone exceeded),
    outside_angle (n, N_ANGLES) bool, outside_cone (n, len(SWING_CONES)) bool."""
    poses = np.asarray(poses, dtype=np.float64)
    rel = poses - poses[:, :1]
    q = skeleton.forward(skeleton.inverse(poses))
    raw = skeleton.inverse(poses, clip=False)
    tol = np.radians(tolerance_deg)
    outside_angle = (raw < ANGLE_LIMITS[:, 0] - tol) | (raw > ANGLE_LIMITS[:, 1] + tol)
    outside_cone = np.stack([np.linalg.norm(raw[:, [angle_index(a), angle_index(b)]], axis=-1) > radius + tol
                             for (a, b), radius in SWING_CONES], axis=-1)
    return {
        "error": np.linalg.norm(q - rel, axis=-1).mean(axis=-1),
        "error_same_lengths": np.linalg.norm(q - with_lengths(poses, skeleton.bone_lengths), axis=-1).mean(axis=-1),
        "angles": raw,
        "outside": ~within_limits(raw, tol),
        "outside_angle": outside_angle,
        "outside_cone": outside_cone,
    }


def _distribution(values):
    v = np.asarray(values, dtype=np.float64)
    if not len(v):
        return {k: None for k in ("mean", "median", "p90", "p99", "max")}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "p90": float(np.percentile(v, 90)),
            "p99": float(np.percentile(v, 99)), "max": float(v.max())}


def _stats(checks, sel, threshold):
    err = checks["error"][sel]
    return {"frames": int(sel.sum()), "mpjpe_mm": _distribution(err),
            "mpjpe_same_lengths_mm": _distribution(checks["error_same_lengths"][sel]),
            "share_above_threshold": float((err > threshold).mean()) if len(err) else None,
            "share_outside_limits": float(checks["outside"][sel].mean()) if len(err) else None}


def _angles(checks, sel):
    """Per angle (and cone): limits, range of the raw IK angles (degrees), share outside."""
    def entry(col, lo, hi, outside):
        return {"limits_deg": [round(float(lo), 9), round(float(hi), 9)], "min": float(col.min()),
                "p1": float(np.percentile(col, 1)), "p50": float(np.median(col)),
                "p99": float(np.percentile(col, 99)), "max": float(col.max()), "share_outside": float(outside.mean())}

    a = checks["angles"][sel] * _DEG
    out = {name: entry(a[:, i], *(ANGLE_LIMITS[i] * _DEG), checks["outside_angle"][sel, i])
           for i, name in enumerate(ANGLE_NAMES)}
    for k, ((a_name, b_name), radius) in enumerate(SWING_CONES):
        norm = np.hypot(a[:, angle_index(a_name)], a[:, angle_index(b_name)])
        out[CONE_NAMES[k]] = entry(norm, 0.0, radius * _DEG, checks["outside_cone"][sel, k])
    return out


def _one_camera_per_sequence(meta):
    """bool (n,): the entries of each sequence's first camera (in data.h36m.CAMERA_IDS order)."""
    order = {c: i for i, c in enumerate(h36m.CAMERA_IDS)}
    rank = np.array([order.get(c, len(order)) for c in meta["camera"]])
    keys = [f"{s}/{a}/{sa}" for s, a, sa in zip(meta["subject"], meta["action"], meta["subaction"])]
    first = {}
    for k, r in zip(keys, rank):
        first[k] = min(first.get(k, r), r)
    return np.array([first[k] == r for k, r in zip(keys, rank)], dtype=bool)


def check_file(path, max_frames=None, threshold_mm=THRESHOLD_MM, source="bank", tolerance_deg=TOLERANCE_DEG):
    """The report (a JSON-able dict, see the module docstring) for the dataset file at path.
    A bad file is a DatasetError of one line."""
    with PoseDataset(path) as ds:
        if source == "bank":
            meta = ds.bank_metadata()
            pick = np.flatnonzero(_one_camera_per_sequence(meta))
            described = ("the pose bank" if ds.has_bank else "the image rows (no pose bank)") + \
                ", one camera per sequence"
        else:
            meta = ds.metadata()
            pick = np.arange(len(meta["frame"]))
            described = "the image rows, every camera"
        total = len(pick)
        if max_frames is not None and total > max_frames:
            pick = pick[np.unique(np.linspace(0, total - 1, max_frames).round().astype(np.int64))]
        poses = ds.bank_poses(pick) if source == "bank" else ds.poses(pick)
        meta = {k: v[pick] for k, v in meta.items()}
        skeletons = {s: Skeleton(bone_lengths(ds.tpose(s))) for s in np.unique(meta["subject"])}
        file_source = ds.source
    n = len(pick)
    checks = {"error": np.zeros(n), "error_same_lengths": np.zeros(n), "angles": np.zeros((n, N_ANGLES)),
              "outside": np.zeros(n, bool), "outside_angle": np.zeros((n, N_ANGLES), bool),
              "outside_cone": np.zeros((n, len(SWING_CONES)), bool)}
    for s, skel in skeletons.items():
        rows = np.flatnonzero(meta["subject"] == s)
        for lo in range(0, len(rows), _CHUNK):
            part = rows[lo:lo + _CHUNK]
            for k, v in frame_checks(skel, poses[part], tolerance_deg).items():
                checks[k][part] = v
    everything = np.ones(n, bool)
    report = {"file": str(path), "source": file_source, "poses": described, "frames": n, "of": total,
              "threshold_mm": threshold_mm, "tolerance_deg": tolerance_deg,
              "overall": _stats(checks, everything, threshold_mm),
              "angles": _angles(checks, everything) if n else {}, "subjects": {}, "actions": []}
    for s in sorted(skeletons, key=h36m.ALL_SUBJECTS.index):
        sel = meta["subject"] == s
        report["subjects"][s] = _stats(checks, sel, threshold_mm)
        report["subjects"][s]["angles_outside"] = {k: v["share_outside"] for k, v in _angles(checks, sel).items()
                                                   if v["share_outside"] > 0}
        for a in h36m.ACTIONS:
            sel_a = sel & (meta["action"] == a)
            if sel_a.any():
                report["actions"].append({"subject": s, "action": a, **_stats(checks, sel_a, threshold_mm)})
    return report


def format_report(report):
    """The report as a printed table."""
    t = report["threshold_mm"]
    lines = [f"{report['file']} ({report['source']}): {report['frames']} of {report['of']} poses from "
             f"{report['poses']}",
             "IK->FK round trip with each subject's skeleton, MPJPE per frame (mm, 17 joints); 'outside': frames "
             f"whose IK angles lie outside the limits (by more than {report['tolerance_deg']:g} deg) before clipping",
             f"{'group':<24}{'frames':>8}{'mean':>8}{'median':>8}{'p90':>8}{'p99':>8}{'max':>8}"
             f"{'>' + format(t, 'g') + ' mm':>9}{'outside':>9}"]

    def mm(v):      # small errors (float32 rounding) stay visible
        return f"{v:>8.1e}" if 0 < v < 0.01 else f"{v:>8.2f}"

    def row(name, st):
        if not st["frames"]:
            return f"{name:<24}{0:>8}"
        d = st["mpjpe_mm"]
        return (f"{name:<24}{st['frames']:>8}" + "".join(mm(d[k]) for k in ("mean", "median", "p90", "p99", "max"))
                + f"{100 * st['share_above_threshold']:>8.1f}%{100 * st['share_outside_limits']:>8.1f}%")

    lines.append(row("all", report["overall"]))
    for s, st in report["subjects"].items():
        lines.append(row(s, st))
    for st in report["actions"]:
        lines.append(row(f"  {st['subject']} {st['action']}", st))
    same = report["overall"]["mpjpe_same_lengths_mm"]
    if report["frames"]:
        lines.append(f"with each pose's bones rescaled to the skeleton's lengths (the model's degrees of freedom and "
                     f"limits alone): mean {mm(same['mean']).strip()}, p99 {mm(same['p99']).strip()}, max "
                     f"{mm(same['max']).strip()} mm")
    outside = [(k, v) for k, v in report["angles"].items() if v["share_outside"] > 0]
    if outside:
        lines.append("raw IK angles outside their limits (degrees: range of the checked poses, limits, "
                     "share of frames):")
        for name, v in sorted(outside, key=lambda kv: -kv[1]["share_outside"]):
            lo, hi = v["limits_deg"]
            lines.append(f"  {name:<22} {v['min']:7.1f} .. {v['max']:6.1f}   limits {lo:6.1f} .. {hi:6.1f}   "
                         f"{100 * v['share_outside']:5.1f}%")
    elif report["frames"]:
        lines.append("no raw IK angle outside its limits")
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m data.skeleton",
                                     description="Check how well the kinematic skeleton fits a dataset file's "
                                                 "poses: IK->FK round-trip errors and joint angles outside the limits.")
    parser.add_argument("--check", required=True, metavar="FILE.h5", help="the dataset file (data.dataset format)")
    parser.add_argument("--max-frames", type=flags.positive_int, default=None, metavar="N",
                        help="check N poses evenly spaced over the file's (default: all)")
    parser.add_argument("--threshold", type=flags.positive_float, default=THRESHOLD_MM, metavar="MM",
                        help=f"report the share of frames whose round trip exceeds MM mm (default {THRESHOLD_MM:g})")
    parser.add_argument("--tolerance", type=flags.non_negative_float, default=TOLERANCE_DEG, metavar="DEG",
                        help=f"an angle is outside its limit when beyond it by more than DEG degrees (default "
                             f"{TOLERANCE_DEG:g}: float32 poses at a limit read slightly beyond it)")
    parser.add_argument("--source", choices=("bank", "images"), default="bank",
                        help="the pose bank, one camera per sequence (default; the image rows without a bank), "
                             "or the image rows, every camera")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the report as JSON ('-': stdout)")
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        report = check_file(args.check, args.max_frames, args.threshold, args.source, args.tolerance)
        text = json.dumps(report, indent=1)
        if args.json == "-":
            print(text)
        else:
            if args.json:
                write_text_atomic(args.json, text + "\n")
            print(format_report(report))
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e.filename or args.json}: cannot write ({e.strerror or e})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Convert the real Human3.6M release into the project's dataset format (data.dataset).

    python -m data.prepare_h36m --root DIR --out FILE.h5 [--subjects S1,S5,...] [--frame-step 5]
                                [--bank-rate 10] [--metadata metadata.xml] [--keep-offset-s9]
                                [--paper-exclusions] [--summary FILE.json]

Expected layout under DIR (the release's, one folder per subject):

    S1/MyPoseFeatures/D3_Positions_mono/<Action>[ <n>].<camera>.cdf   variable "Pose", (1, F, 96) mm
    S1/Videos/<Action>[ <n>].<camera>.mp4                              decoded with PyAV
  or, for frames already extracted from the videos:
    S1/Images/<Action>[ <n>].<camera>/<any name>.jpg|png               one image per frame; sorted
                                                                       by name, the k-th is frame k

For every sequence it keeps every `frame-step`-th frame (50 Hz indices), selects the 17 joints,
projects them with the camera's intrinsics and distortion, takes the square box around them
(margin data.h36m.BOX_MARGIN, rounded to whole pixels), crops (black outside the image) and
resizes the image to 128x128. Every pose of the sequence at `bank-rate` Hz (every 5th frame at
the default 10 Hz) goes into the file's pose bank (bank/), linked to its image where the frame was
kept; the frame step must therefore be a multiple of the bank's step. Raw action names are
mapped to the 15 canonical ones (TakingPhoto -> Photo, WalkingDog -> WalkDog, ...); within a
subject and action the raw sequences, sorted by their number, become sub-actions 1 and 2
(data.h36m.number_subactions, the numbering data.vp3d shares). The
output is written to a temporary file and renamed when complete, so an interrupted run leaves
nothing half-written and re-running is safe.

The release's traps, each reported again and again to the tools that prepare it:

* three S9 sequences whose 3D annotations are offset from the video (ANNOTATION_OFFSET) are
  skipped, all cameras (--keep-offset-s9 keeps them);
* a video with more frames than its pose file (some of S9's) is read for the pose file's frames
  only; each is counted and listed (summary "longer_videos");
* the S11 Directions video of camera 54138969 (KNOWN_CORRUPT), corrupt in early releases and
  replaced later, is skipped only when it does not decode, or with --paper-exclusions (the
  paper leaves the action out for it);
* the cameras come from data.h36m's built-in calibration, or with --metadata from the release's
  metadata.xml (data.h36m_metadata), checked against the built-in values.

Every skip is counted and listed in the summary, which is printed, stored as the JSON file
attribute `preparation` of the output, and with --summary written to a JSON file.
"""
import argparse
import json
import logging
import os
import re
import sys
import time

import numpy as np

from data import flags, h36m
from data.dataset import BANK_RATE_HZ, IMAGE_SIZE, DatasetError, DatasetWriter, bank_step
from data.files import write_text_atomic
from data.skeleton import Skeleton

log = logging.getLogger(__name__)

# (subject, raw action name, camera) of the video corrupt in early releases of the videos (replaced
# later; the paper leaves "Direction" out of its tables for it). The raw name is "Directions",
# without a number: VideoPose3D's prepare_data_h36m.py drops S11 'Directions', H36M-Toolbox's
# image folder s_11_act_02_subact_02_ca_01 (metadata.xml's S11 (2, 2) = 'Directions', camera 1) is
# empty, and anibali/h36m-fetch's process_all.py reads 'Directions 1.54138969' in its place.
KNOWN_CORRUPT = {("S11", "Directions", "54138969")}

_CORRUPT_NOTE = "; the S11 Directions video of camera 54138969 is corrupt in early releases (replaced later)"

# S9 sequences whose 3D annotations are offset from the video (about 200 mm along the world's x
# axis), all four cameras. Numbered as MotionBERT (train.py, block_list 's_09_act_05_subact_02',
# 's_09_act_10_subact_02', 's_09_act_13_subact_01') and MMPose's converter
# (tools/dataset_converters/preprocess_h36m.py) number sequences: by the release's metadata.xml
# table, (action id, sub-action id) with 5 Greeting, 10 SittingDown, 13 Waiting. S9's row of that
# table maps them to the files 'Greeting', 'SittingDown 1' and 'Waiting 1' (the values below; with
# --metadata, the file's own table is used), the three files PosePile (posepile/ds/h36m/main.py,
# correct_world_coords) shifts back by 200 mm. This script numbers sub-actions its own way (the
# files of an action by their number), so these are its S9 Greeting 1, SittingDown 2, Waiting 2.
ANNOTATION_OFFSET = {("S9", 5, 2): "Greeting", ("S9", 10, 2): "SittingDown 1", ("S9", 13, 1): "Waiting 1"}

# The kinds of skip the summary counts ("sequence" names a sequence, a subject or a file).
SKIP_KINDS = {
    "no_pose_folder": "no MyPoseFeatures/D3_Positions_mono folder",
    "not_an_action": "not one of the 15 actions (e.g. the release's _ALL files)",
    "unknown_camera": "not one of the four cameras",
    "annotation_offset": "S9 annotation offset from the video (--keep-offset-s9 keeps it)",
    "paper_exclusion": "the corrupt-in-early-releases S11 video, left out by --paper-exclusions",
    "unreadable_poses": "the pose file cannot be read",
    "no_frames_source": "no video and no Images folder",
    "undecodable_video": "the video does not decode",
    "no_frames": "no frame could be read",
}
_FILE = re.compile(r"^(?P<action>.+)\.(?P<camera>\d{8})\.cdf$")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class Sequence:
    """One (subject, raw action name, camera) of the release."""

    def __init__(self, subject, raw_action, camera, cdf_path):
        self.subject, self.raw_action, self.camera, self.cdf_path = subject, raw_action, camera, cdf_path
        self.action, self.number = h36m.split_action(raw_action)
        self.subaction = None

    def __repr__(self):
        return f"{self.subject}/{self.raw_action}.{self.camera}"


def _skip(skipped, sequence, kind, detail=None):
    """Record a skip (a dict: sequence, kind, reason) in the list `skipped` and log it."""
    reason = SKIP_KINDS[kind] + (f": {detail}" if detail else "")
    (log.info if kind == "not_an_action" else log.warning)("skipping %s: %s", sequence, reason)
    if skipped is not None:
        skipped.append({"sequence": str(sequence), "kind": kind, "reason": reason})


def find_sequences(root, subjects, skipped=None):
    """Sequences of `subjects` under root, with sub-action numbers assigned. Unknown actions
    (such as the release's '_ALL' files), unknown cameras and subjects without a pose folder are
    skipped with a log message, and recorded in the list `skipped` when one is given."""
    found = []
    for subject in subjects:
        folder = os.path.join(root, subject, "MyPoseFeatures", "D3_Positions_mono")
        if not os.path.isdir(folder):
            _skip(skipped, subject, "no_pose_folder", folder)
            continue
        for name in sorted(os.listdir(folder)):
            match = _FILE.match(name)
            if not match:
                continue
            try:
                seq = Sequence(subject, match["action"], match["camera"], os.path.join(folder, name))
            except ValueError as e:
                _skip(skipped, f"{subject}/{name[:-4]}", "not_an_action", str(e).split(";")[0])
                continue
            if seq.camera not in h36m.CAMERAS:
                _skip(skipped, seq, "unknown_camera", seq.camera)
                continue
            found.append(seq)
    # Sub-actions: the raw names of one subject and action, in the order of their numbers.
    for subject in subjects:
        numbers = h36m.number_subactions({s.raw_action for s in found if s.subject == subject})
        for s in found:
            if s.subject == subject:
                s.subaction = numbers[s.raw_action][1]
    return found


def offset_sequences(metadata=None):
    """{(subject, raw action name)} of ANNOTATION_OFFSET, named by metadata's table when given."""
    out = set()
    for (subject, action_id, subaction_id), name in ANNOTATION_OFFSET.items():
        listed = metadata.file_prefix(subject, action_id, subaction_id) if metadata is not None else None
        if listed and listed != name:
            log.warning("%s: the table names %s's sequence (%d, %d) %r, not %r: using the table's",
                        metadata.path, subject, action_id, subaction_id, listed, name)
        out.add((subject, listed or name))
    return out


def read_poses(cdf_path):
    """(F,17,3) float64 camera-coordinate poses (mm) from a D3_Positions_mono CDF file."""
    import cdflib

    try:
        pose = np.asarray(cdflib.CDF(cdf_path).varget("Pose"), dtype=np.float64)
    except Exception as e:  # cdflib raises several types for damaged files
        raise DatasetError(f"{cdf_path}: cannot read variable 'Pose' ({e})") from None
    if pose.ndim == 3 and pose.shape[0] == 1:
        pose = pose[0]
    if pose.ndim != 2 or pose.shape[1] != 96:
        raise DatasetError(f"{cdf_path}: field 'Pose': expected (1, frames, 96), got {pose.shape}")
    return pose.reshape(-1, 32, 3)[:, list(h36m.H36M32_TO_17)]


def integer_box(box):
    """Round a float (x0, y0, side) box to whole pixels: (x0, y0, side) ints."""
    x0, y0, side = box
    side = max(int(round(side)), 1)
    return int(round(x0 + box[2] / 2 - side / 2)), int(round(y0 + box[2] / 2 - side / 2)), side


def crop_resize(frame, box, size=IMAGE_SIZE):
    """Crop the integer box (x0, y0, side) out of an RGB frame (H,W,3) uint8, black outside the
    image, and resize it to size x size (antialiased). Returns uint8 (size,size,3)."""
    from PIL import Image

    x0, y0, side = box
    h, w = frame.shape[:2]
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side, w), min(y0 + side, h)
    if sx0 < sx1 and sy0 < sy1:
        canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = frame[sy0:sy1, sx0:sx1]
    return np.asarray(Image.fromarray(canvas).resize((size, size), Image.BILINEAR, reducing_gap=None))


def iter_video_frames(path, wanted, info=None, n_poses=None):
    """Yield (index, RGB frame) for the frame indices in the sorted list `wanted` of a video.

    info (a dict), if given, receives "decoded" (frames decoded), "error" (why decoding stopped
    early, or None), "stream_frames" (the container's frame count, 0 where it states none) and,
    with n_poses, "longer": whether the video has a frame at index n_poses (more frames than the
    pose file; decoding goes on to that frame only to find out).
    """
    import av  # imported here: only the real-data path needs PyAV

    wanted = list(wanted)
    info = {} if info is None else info
    info.update(decoded=0, error=None, stream_frames=0, longer=False)
    k = 0
    try:
        with av.open(path) as container:
            info["stream_frames"] = int(container.streams.video[0].frames or 0)
            for index, frame in enumerate(container.decode(video=0)):
                info["decoded"] = index + 1
                if n_poses is not None and index >= n_poses:
                    info["longer"] = True
                    break
                if k < len(wanted) and index == wanted[k]:
                    yield index, frame.to_ndarray(format="rgb24")
                    k += 1
                if k >= len(wanted) and n_poses is None:
                    break
    except (av.error.FFmpegError, IndexError) as e:   # IndexError: a container without a video stream
        info["error"] = str(e) or type(e).__name__
        log.warning("%s: decoding stopped at frame %d (%s)", path, info["decoded"], info["error"])


def iter_image_frames(folder, wanted, info=None, n_poses=None):
    """Yield (index, RGB frame) for the wanted frame indices from a folder of extracted images.
    info as for iter_video_frames ("stream_frames" is the number of image files)."""
    from PIL import Image

    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    info = {} if info is None else info
    info.update(decoded=0, error=None, stream_frames=len(files),
                longer=n_poses is not None and len(files) > n_poses)
    for index in wanted:
        if index >= len(files):
            break
        with Image.open(os.path.join(folder, files[index])) as img:
            yield index, np.asarray(img.convert("RGB"))
        info["decoded"] = index + 1


def frame_source(root, seq):
    """(kind, path) of the frames of a sequence: the video, else a folder of images, else None."""
    stem = f"{seq.raw_action}.{seq.camera}"
    video = os.path.join(root, seq.subject, "Videos", stem + ".mp4")
    if os.path.isfile(video):
        return "video", video
    folder = os.path.join(root, seq.subject, "Images", stem)
    if os.path.isdir(folder):
        return "images", folder
    return None, None


def check_steps(frame_step, bank_rate_hz):
    """Raise ValueError unless frame_step >= 1 and the kept frames lie on the bank's grid (a
    bank_rate_hz of None writes no bank)."""
    if frame_step < 1:
        raise ValueError(f"frame step must be at least 1, got {frame_step}")
    if bank_rate_hz is not None and frame_step % bank_step(bank_rate_hz):
        raise ValueError(f"frame step {frame_step} is not a multiple of the pose bank's step "
                         f"{bank_step(bank_rate_hz)} ({bank_rate_hz:g} Hz): the images must lie on the bank's frames")


def load_cameras(metadata_path=None, subjects=h36m.ALL_SUBJECTS):
    """({camera id: h36m.Camera}, cameras JSON for the file, report dict, Metadata or None).

    Without metadata_path, data.h36m's built-in calibration. With it, the release's
    metadata.xml (data.h36m_metadata), compared with the built-in values: small differences are
    warnings listed in the report; a rotation off by more than 1 degree, a centre by more than
    100 mm or an intrinsic by more than 5 px is a DatasetError (not the Human3.6M calibration, or
    a layout the reader does not know), as is any problem reading the file.
    """
    if metadata_path is None:
        return dict(h36m.CAMERAS), h36m.cameras_json(subjects), {"source": "built-in", "differences": []}, None
    from data import h36m_metadata

    meta = h36m_metadata.read_metadata(metadata_path)
    differences = h36m_metadata.compare(meta, subjects)
    gross = {"rotation_deg": 1.0, "centre_mm": 100.0, "intrinsics_px": 5.0}
    for d in differences:
        if d["what"] in gross and d["difference"] > gross[d["what"]]:
            who = f"camera {d['camera']}" + (f", subject {d['subject']}" if d["subject"] else "")
            raise DatasetError(f"{metadata_path}: field 'w0': {who}: {d['what']} differs from the built-in "
                               f"calibration by {d['difference']:.3g} (more than {gross[d['what']]:g}): not the "
                               "Human3.6M calibration, or a layout this reader does not know")
    for d in differences:
        log.warning("%s: camera %s%s: %s differs from the built-in value by %.3g (tolerance %g)", metadata_path,
                    d["camera"], f" {d['subject']}" if d["subject"] else "", d["what"], d["difference"], d["tolerance"])
    if not differences:
        log.info("%s: the cameras agree with the built-in calibration", metadata_path)
    report = {"source": os.path.abspath(metadata_path), "differences": differences}
    return dict(meta.intrinsics), meta.cameras_json(subjects), report, meta


def prepare(root, out, subjects=h36m.ALL_SUBJECTS, frame_step=5, progress=True, bank_rate_hz=BANK_RATE_HZ,
            keep_offset_s9=False, paper_exclusions=False, metadata=None):
    """Convert the release under `root` into the dataset file `out`. Returns the summary dict.

    Images at every `frame_step`-th frame; the pose bank (bank/) holds every pose of each
    converted sequence at bank_rate_hz (None: no bank), pose-only where no image was kept.
    keep_offset_s9: keep the S9 sequences of ANNOTATION_OFFSET (skipped by default);
    paper_exclusions: skip the KNOWN_CORRUPT video even when it decodes; metadata: path of the
    release's metadata.xml to take the cameras from (None: data.h36m's built-in values).

    Summary (also stored as the file's JSON attribute `preparation`): sequences, images, bank;
    skipped (list of {sequence, kind, reason}, kinds in SKIP_KINDS) and skip_counts {kind: n};
    longer_videos / shorter_videos (lists of {sequence, frames, poses, used}); cameras ({source,
    differences}); the options; seconds.
    """
    from tqdm import tqdm

    check_steps(frame_step, bank_rate_hz)
    subjects = h36m.parse_subjects(subjects)
    cameras, cameras_json, camera_report, meta = load_cameras(metadata, subjects)
    skipped = []
    sequences = find_sequences(root, subjects, skipped)
    if not sequences:
        raise DatasetError(f"{root}: no <subject>/MyPoseFeatures/D3_Positions_mono/*.cdf files for "
                           f"{', '.join(subjects)}")
    offset = offset_sequences(meta)
    summary = dict(root=os.path.abspath(root), subjects=list(subjects), frame_step=frame_step,
                   bank_rate_hz=bank_rate_hz, keep_offset_s9=bool(keep_offset_s9),
                   paper_exclusions=bool(paper_exclusions), cameras=camera_report,
                   sequences=0, images=0, bank=0, skipped=skipped, longer_videos=[], shorter_videos=[])
    poses_by_subject = {}
    start = time.time()
    with DatasetWriter(out, source="h36m", cameras=cameras_json,
                       generator=None, bank_rate_hz=bank_rate_hz) as writer:
        bar = tqdm(sequences, unit="seq", desc="Human3.6M", disable=not progress, dynamic_ncols=True)
        for seq in bar:
            bar.set_postfix_str(str(seq))
            known_corrupt = (seq.subject, seq.raw_action, seq.camera) in KNOWN_CORRUPT
            if (seq.subject, seq.raw_action) in offset and not keep_offset_s9:
                _skip(skipped, seq, "annotation_offset")
                continue
            if known_corrupt and paper_exclusions:
                _skip(skipped, seq, "paper_exclusion")
                continue
            try:
                poses = read_poses(seq.cdf_path)
            except DatasetError as e:
                _skip(skipped, seq, "unreadable_poses", str(e))
                continue
            poses_by_subject.setdefault(seq.subject, []).append(poses[::max(1, frame_step * 10)])
            kind, path = frame_source(root, seq)
            if kind is None:
                _skip(skipped, seq, "no_frames_source", f"no video {seq.raw_action}.{seq.camera}.mp4 and no Images "
                                                       "folder" + (_CORRUPT_NOTE if known_corrupt else ""))
                continue
            wanted = list(range(0, len(poses), frame_step))
            info = {}
            reader = iter_video_frames if kind == "video" else iter_image_frames
            images, kept, boxes = [], [], []
            camera = cameras[seq.camera]
            for index, frame in reader(path, wanted, info, n_poses=len(poses)):
                box = integer_box(h36m.square_box(h36m.project(poses[index], camera), h36m.BOX_MARGIN))
                images.append(crop_resize(frame, box))
                kept.append(index)
                boxes.append(box)
            if info["longer"]:
                frames = info["stream_frames"] if info["stream_frames"] > len(poses) else None
                summary["longer_videos"].append({"sequence": str(seq), "frames": frames, "poses": len(poses),
                                                 "used": len(poses)})
                log.warning("%s: the %s has %s frames, the pose file %d: using the first %d", seq,
                            "video" if kind == "video" else "Images folder", frames if frames else "more",
                            len(poses), len(poses))
            if not kept:
                if kind == "video" and info["error"] is not None:
                    detail = info["error"] + (_CORRUPT_NOTE if known_corrupt else "")
                    _skip(skipped, seq, "undecodable_video", detail)
                else:
                    _skip(skipped, seq, "no_frames", path)
                continue
            if len(kept) < len(wanted):
                log.warning("%s: %d of %d wanted frames available in %s", seq, len(kept), len(wanted), path)
                summary["shorter_videos"].append({"sequence": str(seq), "poses": len(poses), "used": len(kept),
                                                  "frames": info["decoded" if kind == "video" else "stream_frames"]})
            writer.append(np.array(images), poses[kept].astype(np.float32), seq.subject, seq.action,
                          seq.subaction, seq.camera, np.array(kept), box=np.array(boxes, dtype=np.float32))
            if bank_rate_hz is not None:
                grid = np.arange(0, len(poses), bank_step(bank_rate_hz))
                writer.append_bank(poses[grid].astype(np.float32), seq.subject, seq.action, seq.subaction,
                                   seq.camera, grid)
                summary["bank"] += len(grid)
            summary["sequences"] += 1
            summary["images"] += len(kept)
        bar.close()
        # Per-subject T pose from the median bone lengths over the subject's frames.
        for subject, chunks in poses_by_subject.items():
            writer.set_tpose(subject, Skeleton.from_poses(np.concatenate(chunks)).tpose())
        if summary["images"] == 0:
            raise DatasetError(f"{root}: no frames could be read (see the warnings above)")
        summary["skip_counts"] = skip_counts(skipped)
        summary["seconds"] = round(time.time() - start, 3)
        writer.set_info("preparation", _attribute_summary(summary))
    return summary


def _attribute_summary(summary, limit=60000):
    """The summary for the file attribute: whole, or, should its JSON pass HDF5's 64 KiB limit on
    an attribute, without the reasons and then without the lists (the counts stay)."""
    if len(json.dumps(summary)) <= limit:
        return summary
    short = dict(summary, skipped=[{k: v for k, v in s.items() if k != "reason"} for s in summary["skipped"]])
    if len(json.dumps(short)) <= limit:
        return short
    return dict(summary, skipped=None, longer_videos=len(summary["longer_videos"]),
                shorter_videos=len(summary["shorter_videos"]), truncated="lists too long for the attribute")


def skip_counts(skipped):
    """{kind: number of skips}, in SKIP_KINDS order, kinds that occurred only."""
    counts = {}
    for s in skipped:
        counts[s["kind"]] = counts.get(s["kind"], 0) + 1
    return {k: counts[k] for k in SKIP_KINDS if k in counts}


def format_summary(summary, out):
    """The summary as printed lines: totals, then every skip by kind, every longer video."""
    lines = [f"{out}: {summary['images']} images and {summary['bank']} bank poses from {summary['sequences']} "
             f"sequences ({len(summary['skipped'])} skipped) in {summary['seconds']:.0f} s; cameras: "
             f"{summary['cameras']['source']}"
             + (f" ({len(summary['cameras']['differences'])} differences from the built-in values)"
                if summary["cameras"]["differences"] else "")]
    for kind, n in summary["skip_counts"].items():
        lines.append(f"  skipped {n} x {SKIP_KINDS[kind]}:")
        lines += [f"    {s['sequence']}" for s in summary["skipped"] if s["kind"] == kind]
    for key, words in (("longer_videos", "more frames than the pose file (the pose file's count used)"),
                       ("shorter_videos", "fewer frames than the pose file (the frames past the end pose-only)")):
        if summary[key]:
            lines.append(f"  {len(summary[key])} videos or Images folders with {words}:")
            lines += [f"    {v['sequence']}: {v['frames'] if v['frames'] else 'more'} frames, {v['poses']} poses"
                      for v in summary[key]]
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m data.prepare_h36m",
                                     description="Convert the Human3.6M release into a dataset file.")
    parser.add_argument("--root", required=True, help="folder holding S1, S5, ... of the release")
    parser.add_argument("--out", required=True, help="dataset file to write (.h5)")
    parser.add_argument("--subjects", default="all",
                        help="comma-separated subjects, or train / test / all (default all)")
    parser.add_argument("--frame-step", type=flags.positive_int, default=5,
                        help="keep the image of every n-th frame of the 50 Hz sequences (default 5)")
    parser.add_argument("--bank-rate", type=flags.non_negative_float, default=BANK_RATE_HZ, metavar="HZ",
                        help=f"poses per second of every sequence in the file's pose bank; must divide 50, "
                             f"and the frame step must be a multiple of 50 / HZ; 0 for no bank (default "
                             f"{BANK_RATE_HZ:g})")
    traps = parser.add_argument_group("the release's known problems")
    traps.add_argument("--metadata", default=None, metavar="XML",
                       help="the release's metadata.xml: take the cameras from it, checked against the "
                            "built-in calibration (default: the built-in values)")
    traps.add_argument("--keep-offset-s9", action="store_true",
                       help="keep the three S9 sequences whose annotations are offset from the video "
                            "(Greeting, SittingDown 1, Waiting 1; skipped by default)")
    traps.add_argument("--paper-exclusions", action="store_true",
                       help="skip the S11 Directions video of camera 54138969 even when it decodes, as "
                            "the paper does (by default it is skipped only when it does not decode)")
    parser.add_argument("--summary", default=None, metavar="JSON",
                        help="also write the preparation summary (skips, longer videos, cameras) to this "
                             "JSON file (it is always printed and stored in the output's attributes)")
    return parser


def parse_args(argv=None):
    """The checked arguments; a bad one exits with argparse's usage error (status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.bank_rate = args.bank_rate or None
    try:
        check_steps(args.frame_step, args.bank_rate)
    except ValueError as e:
        parser.error(str(e))
    try:
        args.subjects = h36m.parse_subjects(args.subjects)
    except ValueError as e:
        parser.error(str(e))
    if not os.path.isdir(args.root):
        parser.error(f"--root {args.root}: no such folder")
    if args.metadata is not None and not os.path.isfile(args.metadata):
        parser.error(f"--metadata {args.metadata}: no such file")
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        summary = prepare(args.root, args.out, args.subjects, args.frame_step, bank_rate_hz=args.bank_rate,
                          keep_offset_s9=args.keep_offset_s9, paper_exclusions=args.paper_exclusions,
                          metadata=args.metadata)
        if args.summary:
            write_text_atomic(args.summary, json.dumps(summary, indent=1, sort_keys=True) + "\n")
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e.filename or args.out}: cannot write ({e.strerror or e})", file=sys.stderr)
        return 1
    print(format_summary(summary, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

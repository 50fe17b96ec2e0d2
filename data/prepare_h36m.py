"""Convert the real Human3.6M release into the project's dataset format (data.dataset).

    python -m data.prepare_h36m --root DIR --out FILE.h5 [--subjects S1,S5,...] [--frame-step 5]
                                [--bank-rate 10]

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
subject and action the raw sequences, sorted by their number, become sub-actions 1 and 2. The
known corrupt video (S11 Directions, camera 54138969) is skipped with a warning. The output is written to a temporary file and renamed when
complete, so an interrupted run leaves nothing half-written and re-running is safe.
"""
import argparse
import logging
import os
import re
import sys
import time

import numpy as np

from data import flags, h36m
from data.dataset import BANK_RATE_HZ, IMAGE_SIZE, DatasetError, DatasetWriter, bank_step
from data.skeleton import Skeleton

log = logging.getLogger(__name__)

# (subject, canonical action, camera) whose video is known to be corrupt in the release.
KNOWN_CORRUPT = {("S11", "Directions", "54138969")}
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


def find_sequences(root, subjects):
    """Sequences of `subjects` under root, with sub-action numbers assigned. Unknown actions
    (such as the release's '_ALL' files) and subjects without a pose folder are skipped with a
    log message."""
    found = []
    for subject in subjects:
        folder = os.path.join(root, subject, "MyPoseFeatures", "D3_Positions_mono")
        if not os.path.isdir(folder):
            log.warning("skipping subject %s: no folder %s", subject, folder)
            continue
        for name in sorted(os.listdir(folder)):
            match = _FILE.match(name)
            if not match:
                continue
            try:
                seq = Sequence(subject, match["action"], match["camera"], os.path.join(folder, name))
            except ValueError as e:
                log.info("skipping %s: %s", name, e)
                continue
            if seq.camera not in h36m.CAMERAS:
                log.warning("skipping %s: unknown camera %s", name, seq.camera)
                continue
            found.append(seq)
    # Sub-actions: the raw names of one subject and action, in the order of their numbers.
    for subject in subjects:
        for action in h36m.ACTIONS:
            names = sorted({s.raw_action for s in found if s.subject == subject and s.action == action},
                           key=lambda raw: (h36m.split_action(raw)[1] or 0, raw))
            for s in found:
                if s.subject == subject and s.action == action:
                    s.subaction = names.index(s.raw_action) + 1
    return found


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


def iter_video_frames(path, wanted):
    """Yield (index, RGB frame) for the frame indices in the sorted list `wanted` of a video."""
    import av  # imported here: only the real-data path needs PyAV

    wanted = list(wanted)
    k = 0
    try:
        with av.open(path) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if k >= len(wanted):
                    break
                if index == wanted[k]:
                    yield index, frame.to_ndarray(format="rgb24")
                    k += 1
    except av.error.FFmpegError as e:
        log.warning("%s: decoding stopped at frame %d (%s)", path, k, e)


def iter_image_frames(folder, wanted):
    """Yield (index, RGB frame) for the wanted frame indices from a folder of extracted images."""
    from PIL import Image

    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    for index in wanted:
        if index >= len(files):
            break
        with Image.open(os.path.join(folder, files[index])) as img:
            yield index, np.asarray(img.convert("RGB"))


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


def prepare(root, out, subjects=h36m.ALL_SUBJECTS, frame_step=5, progress=True, bank_rate_hz=BANK_RATE_HZ):
    """Convert the release under `root` into the dataset file `out`. Returns a summary dict.

    Images at every `frame_step`-th frame; the pose bank (bank/) holds every pose of each
    converted sequence at bank_rate_hz (None: no bank), pose-only where no image was kept.
    """
    from tqdm import tqdm

    check_steps(frame_step, bank_rate_hz)
    subjects = h36m.parse_subjects(subjects)
    sequences = find_sequences(root, subjects)
    if not sequences:
        raise DatasetError(f"{root}: no <subject>/MyPoseFeatures/D3_Positions_mono/*.cdf files for "
                           f"{', '.join(subjects)}")
    summary = dict(sequences=0, images=0, bank=0, skipped=[])
    poses_by_subject = {}
    start = time.time()
    with DatasetWriter(out, source="h36m", cameras=h36m.cameras_json(subjects),
                       generator=None, bank_rate_hz=bank_rate_hz) as writer:
        bar = tqdm(sequences, unit="seq", desc="Human3.6M", disable=not progress, dynamic_ncols=True)
        for seq in bar:
            bar.set_postfix_str(str(seq))
            if (seq.subject, seq.action, seq.camera) in KNOWN_CORRUPT:
                log.warning("skipping %s: its video is known to be corrupt", seq)
                summary["skipped"].append(str(seq))
                continue
            try:
                poses = read_poses(seq.cdf_path)
            except DatasetError as e:
                log.warning("skipping %s: %s", seq, e)
                summary["skipped"].append(str(seq))
                continue
            poses_by_subject.setdefault(seq.subject, []).append(poses[::max(1, frame_step * 10)])
            kind, path = frame_source(root, seq)
            if kind is None:
                log.warning("skipping %s: no video %s.%s.mp4 and no Images folder", seq, seq.raw_action,
                            seq.camera)
                summary["skipped"].append(str(seq))
                continue
            wanted = list(range(0, len(poses), frame_step))
            frames = iter_video_frames(path, wanted) if kind == "video" else iter_image_frames(path, wanted)
            images, kept, boxes = [], [], []
            camera = h36m.CAMERAS[seq.camera]
            for index, frame in frames:
                box = integer_box(h36m.square_box(h36m.project(poses[index], camera), h36m.BOX_MARGIN))
                images.append(crop_resize(frame, box))
                kept.append(index)
                boxes.append(box)
            if len(kept) < len(wanted):
                log.warning("%s: %d of %d wanted frames available in %s", seq, len(kept), len(wanted), path)
            if not kept:
                summary["skipped"].append(str(seq))
                continue
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
    summary["seconds"] = time.time() - start
    return summary


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
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        summary = prepare(args.root, args.out, args.subjects, args.frame_step, bank_rate_hz=args.bank_rate)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {args.out}: cannot write ({e.strerror or e})", file=sys.stderr)
        return 1
    print(f"{args.out}: {summary['images']} images and {summary['bank']} bank poses from "
          f"{summary['sequences']} sequences ({len(summary['skipped'])} skipped) in {summary['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

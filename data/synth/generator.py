"""Generation of the synthetic dataset and its cache under ./cache/.

Generation is deterministic for a seed whatever the number of worker processes: every
(subject, action, sub-action) sequence draws its motion, frames and per-image jitter from its own
generator, seeded by its names; the capture room comes from its own generator (one for the whole
dataset in the "lab" setting, one per sequence in the "random" one), so the motions, poses and
pose bank do not depend on the room setting.
"""
import functools
import logging
import multiprocessing
import os
import time

import numpy as np

from data import h36m
from data.dataset import BANK_RATE_HZ, IMAGE_SIZE, DatasetError, DatasetWriter, PoseDataset, bank_step
from data.synth import motion, render
from data.synth.subjects import SubjectProfile

log = logging.getLogger(__name__)

GENERATOR_VERSION = 3
FRAMES_PER_SEQUENCE = 12        # per camera, at scale 1: 7 x 15 x 2 x 4 x 12 = 10,080 images
DURATION = (24.0, 36.0)         # seconds of motion asked for per sequence (scripts end near it)
SUBACTIONS = (1, 2)
# Image frames come in clips of CLIP_FRAMES consecutive pose-bank frames (0.1 s apart at 10 Hz),
# the clips spread evenly over the sequence; 1 spreads single frames (no temporal neighbours).
CLIP_FRAMES = 1
# "lab": one room, light and per-camera exposure for the whole dataset, as Human3.6M's one studio;
# "random": a room and light of its own for every sequence (backgrounds never repeat: harder).
ROOMS = ("lab", "random")


def default_path(scale=1.0, seed=0, rooms="lab", bank_rate_hz=BANK_RATE_HZ, clip_frames=CLIP_FRAMES):
    """cache/synth_h36m_v<version>_scale<scale>_seed<seed>_<rooms>.h5 (relative to the working
    directory), with _bank<rate>hz before .h5 for a bank rate other than BANK_RATE_HZ and
    _clip<n> for clips of n frames."""
    rate = "" if float(bank_rate_hz) == BANK_RATE_HZ else f"_bank{bank_rate_hz:g}hz"
    clip = "" if int(clip_frames) == CLIP_FRAMES else f"_clip{int(clip_frames)}"
    return os.path.join("cache", f"synth_h36m_v{GENERATOR_VERSION}_scale{scale:g}_seed{seed}_{rooms}{rate}{clip}.h5")


def frames_per_sequence(scale):
    return max(1, int(round(FRAMES_PER_SEQUENCE * scale)))


def check_settings(scale=1.0, rooms="lab", bank_rate_hz=BANK_RATE_HZ, clip_frames=CLIP_FRAMES):
    """Raise ValueError for a non-positive scale, an unknown rooms setting, a bank rate that
    does not divide the 50 Hz capture or a clip length that is not a positive integer."""
    if not (scale > 0 and np.isfinite(scale)):
        raise ValueError(f"scale must be positive and finite, got {scale}")
    if int(clip_frames) != clip_frames or clip_frames < 1:
        raise ValueError(f"clip frames must be a positive integer, got {clip_frames}")
    if rooms not in ROOMS:
        raise ValueError(f"rooms must be one of {', '.join(ROOMS)}, got {rooms!r}")
    bank_step(bank_rate_hz)


# ============================================================================ the capture room
def scene(seed, rooms, subject=None, action=None, subaction=None):
    """(room, lights) a sequence is filmed in: a render.Room and, per camera id, the light dict of
    render.render without its per-image 'blur' (dir, ambient, diffuse, gains (3,), noise).

    rooms "lab": the dataset's one lab (drawn from the seed alone, so shared by every sequence;
    the sequence may be left out); "random": the sequence's own room and light.
    """
    check_settings(rooms=rooms)
    if rooms == "lab":
        return _lab(int(seed))
    return _draw_scene(np.random.default_rng([seed, 5, h36m.ALL_SUBJECTS.index(subject),
                                              h36m.ACTIONS.index(action), subaction]))


@functools.lru_cache(maxsize=2)
def _lab(seed):
    # Baked once per process: every sequence of the dataset shares it.
    return _draw_scene(np.random.default_rng([seed, 3]))


def _draw_scene(rng):
    elevation, azimuth = rng.uniform(35, 75) * np.pi / 180, rng.uniform(0, 2 * np.pi)
    light = dict(dir=np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                               np.sin(elevation)]),
                 ambient=rng.uniform(0.3, 0.5), diffuse=rng.uniform(0.5, 0.8))
    room = render.Room(rng, light)
    lights = {cam: dict(light, gains=rng.uniform(0.85, 1.15) * rng.normal(1.0, 0.04, 3),
                        noise=rng.uniform(1.5, 4.5)) for cam in h36m.CAMERA_IDS}
    return room, lights


# ============================================================================ one sequence
def sequence_motion(subject, action, subaction, seed):
    """(SubjectProfile, motion dict of data.synth.motion.generate_motion (joints (F,17,3) world mm
    at 50 Hz), the sequence's generator, positioned for drawing its frames and per-image jitter)."""
    profile = SubjectProfile(subject, seed)
    rng = np.random.default_rng([seed, 2, h36m.ALL_SUBJECTS.index(subject), h36m.ACTIONS.index(action),
                                 subaction])
    m = motion.generate_motion(action, profile.skeleton, profile.height, rng, duration=rng.uniform(*DURATION))
    return profile, m, rng


def image_frames(n_grid, n, clip_frames, rng):
    """Indices (n,) into the sequence's n_grid bank frames of its n image frames: clips of
    clip_frames consecutive bank frames (the last one shorter if clip_frames does not divide n),
    their starts spread evenly over the sequence with a random phase (one uniform draw)."""
    n_clips = -(-n // clip_frames)
    step = (n_grid - clip_frames + 1) / n_clips
    if step < clip_frames:      # clips would overlap
        raise ValueError(f"{n} image frames in clips of {clip_frames} do not fit on the {n_grid} frames")
    starts = (rng.uniform(0, step) + step * np.arange(n_clips)).astype(np.int64)   # apart by >= clip_frames
    return (starts[:, None] + np.arange(clip_frames)).ravel()[:n]


def render_sequence(subject, action, subaction, seed=0, scale=1.0, rooms="lab", bank_rate_hz=BANK_RATE_HZ,
                    clip_frames=CLIP_FRAMES):
    """Render one (subject, action, sub-action) sequence from all four cameras, with its pose bank.

    The bank holds the poses at frames 0, s, 2s, ... (s = 50 Hz / bank_rate_hz) from every camera;
    the frames_per_sequence(scale) image frames are chosen among them by image_frames (clips of
    clip_frames consecutive bank frames, spread evenly with a random phase). Returns a dict: images (n,S,S,3) uint8, poses (n,17,3) float32,
    camera (n,), frame (n,), box (n,3) (rows ordered by camera, then frame), bank = dict(poses
    (m,17,3) float32, camera (m,), frame (m,)) in the same order, subject, action, subaction.
    """
    check_settings(scale, rooms, bank_rate_hz, clip_frames)
    profile, m, rng = sequence_motion(subject, action, subaction, seed)
    grid = np.arange(0, len(m["joints"]), bank_step(bank_rate_hz))
    n = frames_per_sequence(scale)
    try:
        picks = image_frames(len(grid), n, int(clip_frames), rng)
    except ValueError as e:
        raise DatasetError(f"{subject} {action} {subaction} (scale {scale:g}): {e} of its {bank_rate_hz:g} Hz pose "
                           f"bank; lower the scale or the clip length, or raise the bank rate") from None
    room, lights = scene(seed, rooms, subject, action, subaction)
    out = {key: [] for key in ("images", "poses", "camera", "frame", "box")}
    bank = {key: [] for key in ("poses", "camera", "frame")}
    for cam in h36m.CAMERA_IDS:
        R, T = h36m.extrinsics(subject, cam)
        poses = h36m.world_to_camera(m["joints"][grid], R, T).astype(np.float32)
        bank["poses"].append(poses)
        bank["camera"].append(np.full(len(grid), cam))
        bank["frame"].append(grid)
        chair = []
        if m["chair"] is not None:
            c = m["chair"]
            back = np.array([np.sin(c["yaw"]), -np.cos(c["yaw"])]) * 60.0   # seat centre behind the hip
            chair = render.chair_primitives(c["pos"] + back, c["yaw"], c["seat_height"], R, T)
        for k in picks:
            pose = poses[k]      # the bank's own array: image and bank poses are equal to the bit
            crop = h36m.square_box(h36m.project(pose, cam), h36m.BOX_MARGIN)
            # Small box jitter, as a detector's or a mask's box would have.
            crop[:2] += rng.normal(0, 0.015, 2) * crop[2]
            image = render.render(pose, cam, crop, R, T, profile.style, room,
                                  dict(lights[cam], blur=rng.uniform(0.2, 0.9)), rng,
                                  size=IMAGE_SIZE, extra=chair)
            out["images"].append(image)
            out["poses"].append(pose)
            out["camera"].append(cam)
            out["frame"].append(grid[k])
            out["box"].append(crop)
    result = {key: np.array(value) for key, value in out.items()}
    result["bank"] = {key: np.concatenate(value) for key, value in bank.items()}
    result.update(subject=subject, action=action, subaction=subaction)
    return result


def _render_task(task):
    return render_sequence(*task)


# ============================================================================ the whole dataset
def tasks(seed, scale, subjects=h36m.ALL_SUBJECTS, actions=h36m.ACTIONS, rooms="lab", bank_rate_hz=BANK_RATE_HZ,
          clip_frames=CLIP_FRAMES):
    """Arguments of render_sequence for every sequence, in file order."""
    return [(s, a, sub, seed, scale, rooms, bank_rate_hz, clip_frames)
            for s in subjects for a in actions for sub in SUBACTIONS]


def generate(path, scale=1.0, seed=0, workers=None, subjects=h36m.ALL_SUBJECTS, actions=h36m.ACTIONS,
             progress=True, rooms="lab", bank_rate_hz=BANK_RATE_HZ, clip_frames=CLIP_FRAMES):
    """Generate the synthetic dataset into `path` (atomically). Returns the path.

    scale multiplies the frames per sequence (FRAMES_PER_SEQUENCE at scale 1); workers: processes
    (None: all cores; 1: in this process). The result does not depend on `workers`. rooms: "lab"
    or "random" (ROOMS); bank_rate_hz: the rate of the pose bank (bank/ in the file), which must
    divide 50 Hz; the image frames lie on its grid, in clips of clip_frames consecutive frames.
    """
    from tqdm import tqdm

    check_settings(scale, rooms, bank_rate_hz, clip_frames)
    todo = tasks(seed, scale, subjects, actions, rooms, bank_rate_hz, clip_frames)
    n_images = len(todo) * len(h36m.CAMERA_IDS) * frames_per_sequence(scale)
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    settings = dict(generator="data.synth", version=GENERATOR_VERSION, scale=float(scale), seed=int(seed),
                    subjects=list(subjects), actions=list(actions), image_size=IMAGE_SIZE,
                    frames_per_sequence=frames_per_sequence(scale), box_margin=h36m.BOX_MARGIN,
                    rooms=rooms, bank_rate_hz=float(bank_rate_hz))
    if int(clip_frames) != CLIP_FRAMES:      # absent at the default, so older files keep their fingerprint
        settings["clip_frames"] = int(clip_frames)
    start = time.time()
    # No compression: the sensor noise leaves gzip only 25% to save, at a cost of ~1.3 ms per image
    # in the writing process, which competes with the renderers for the same cores.
    with DatasetWriter(path, source="synthetic", cameras=h36m.cameras_json(subjects),
                       generator=settings, compression=None, bank_rate_hz=bank_rate_hz) as writer:
        for s in subjects:
            writer.set_tpose(s, SubjectProfile(s, seed).tpose())
        bar = tqdm(total=n_images, unit="img", desc="synthetic H36M", disable=not progress,
                   dynamic_ncols=True)
        with _pool(workers) as pool:
            results = pool.imap(_render_task, todo) if pool else map(_render_task, todo)
            for r in results:
                writer.append(r["images"], r["poses"], r["subject"], r["action"], r["subaction"],
                              r["camera"], r["frame"], box=r["box"])
                b = r["bank"]
                writer.append_bank(b["poses"], r["subject"], r["action"], r["subaction"], b["camera"], b["frame"])
                bar.update(len(r["images"]))
        bar.close()
    seconds = time.time() - start
    log.info("wrote %s: %d images (%.1f per second), %d bank poses in %.1f s", path, n_images,
             n_images / max(seconds, 1e-9), writer.n_bank, seconds)
    return path


class _pool:
    """A process pool (spawned, one BLAS thread per worker) or None for workers == 1."""

    def __init__(self, workers):
        self.workers = workers
        self.pool = None

    def __enter__(self):
        if self.workers <= 1:
            return None
        # Workers multiply small matrices; letting BLAS start threads in each would oversubscribe.
        saved = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        os.environ.update({k: "1" for k in saved})
        try:
            self.pool = multiprocessing.get_context("spawn").Pool(self.workers)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return self.pool

    def __exit__(self, exc_type, exc, tb):
        if self.pool is not None:
            if exc_type is None:
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()
        return False


def _matches(path, scale, seed, rooms="lab", bank_rate_hz=BANK_RATE_HZ, clip_frames=CLIP_FRAMES):
    """Why the cached file at `path` cannot be reused, or None if it can."""
    try:
        with PoseDataset(path) as ds:
            g = ds.generator or {}
            if ds.source != "synthetic":
                return f"its source is {ds.source}"
            for key, want in (("version", GENERATOR_VERSION), ("scale", float(scale)), ("seed", int(seed)),
                              ("subjects", list(h36m.ALL_SUBJECTS)), ("actions", list(h36m.ACTIONS)),
                              ("rooms", rooms), ("bank_rate_hz", float(bank_rate_hz))):
                if g.get(key) != want:
                    return f"its generator {key} is {g.get(key)!r}, not {want!r}"
            if g.get("clip_frames", CLIP_FRAMES) != int(clip_frames):
                return f"its generator clip_frames is {g.get('clip_frames', CLIP_FRAMES)!r}, not {int(clip_frames)!r}"
    except DatasetError as e:
        return str(e)
    return None


def ensure_synthetic(path=None, scale=1.0, seed=0, rooms="lab", workers=None, progress=True,
                     bank_rate_hz=BANK_RATE_HZ, clip_frames=CLIP_FRAMES):
    """Path of the synthetic dataset for (scale, seed, rooms), generating it only if missing or stale.

    path None: default_path(scale, seed, rooms, bank_rate_hz) under ./cache/. A file whose
    generator attributes do not match the settings is regenerated (with a log message saying why).
    """
    check_settings(scale, rooms, bank_rate_hz, clip_frames)
    path = default_path(scale, seed, rooms, bank_rate_hz, clip_frames) if path is None else str(path)
    if os.path.exists(path):
        reason = _matches(path, scale, seed, rooms, bank_rate_hz, clip_frames)
        if reason is None:
            return path
        log.warning("regenerating %s: %s", path, reason)
    return generate(path, scale=scale, seed=seed, workers=workers, progress=progress, rooms=rooms,
                    bank_rate_hz=bank_rate_hz, clip_frames=clip_frames)

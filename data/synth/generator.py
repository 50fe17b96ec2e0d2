"""Generation of the synthetic dataset and its cache under ./cache/.

Generation is deterministic for a seed whatever the number of worker processes: every
(subject, action, sub-action) sequence draws from its own generator, seeded by its names.
"""
import logging
import multiprocessing
import os
import time

import numpy as np

from data import h36m
from data.dataset import IMAGE_SIZE, DatasetError, DatasetWriter, PoseDataset
from data.synth import motion, render
from data.synth.subjects import SubjectProfile

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
FRAMES_PER_SEQUENCE = 12        # per camera, at scale 1: 7 x 15 x 2 x 4 x 12 = 10,080 images
DURATION = (24.0, 36.0)         # seconds of motion simulated per sequence
SUBACTIONS = (1, 2)


def default_path(scale=1.0, seed=0):
    """cache/synth_h36m_v<version>_scale<scale>_seed<seed>.h5 (relative to the working directory)."""
    return os.path.join("cache", f"synth_h36m_v{GENERATOR_VERSION}_scale{scale:g}_seed{seed}.h5")


def frames_per_sequence(scale):
    return max(1, int(round(FRAMES_PER_SEQUENCE * scale)))


# ============================================================================ one sequence
def render_sequence(task):
    """Render one (subject, action, sub-action) sequence from all four cameras.

    task = (subject, action, subaction, seed, scale). Returns a dict of arrays ready for
    DatasetWriter.append (rows ordered by camera, then frame) plus 'box' (n,3).
    """
    subject, action, subaction, seed, scale = task
    profile = SubjectProfile(subject, seed)
    rng = np.random.default_rng([seed, 2, h36m.ALL_SUBJECTS.index(subject), h36m.ACTIONS.index(action),
                                 subaction])
    m = motion.generate_motion(action, profile.skeleton, profile.height, rng,
                               duration=rng.uniform(*DURATION))
    joints = m["joints"]
    n = frames_per_sequence(scale)
    step = len(joints) / n
    frames = (rng.uniform(0, step) + step * np.arange(n)).astype(np.int64)
    elevation, azimuth = rng.uniform(35, 75) * np.pi / 180, rng.uniform(0, 2 * np.pi)
    light = dict(dir=np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                               np.sin(elevation)]),
                 ambient=rng.uniform(0.3, 0.5), diffuse=rng.uniform(0.5, 0.8))
    room = render.Room(rng, light)
    out = {key: [] for key in ("images", "poses", "camera", "frame", "box")}
    for cam in h36m.CAMERA_IDS:
        R, T = h36m.extrinsics(subject, cam)
        cam_light = dict(light, gains=rng.uniform(0.85, 1.15) * rng.normal(1.0, 0.04, 3),
                         noise=rng.uniform(1.5, 4.5))
        chair = []
        if m["chair"] is not None:
            c = m["chair"]
            back = np.array([np.sin(c["yaw"]), -np.cos(c["yaw"])]) * 60.0   # seat centre behind the hip
            chair = render.chair_primitives(c["pos"] + back, c["yaw"], c["seat_height"], R, T)
        for f in frames:
            pose = h36m.world_to_camera(joints[f], R, T)
            crop = h36m.square_box(h36m.project(pose, cam), h36m.BOX_MARGIN)
            # Small box jitter, as a detector's or a mask's box would have.
            crop[:2] += rng.normal(0, 0.015, 2) * crop[2]
            image = render.render(pose, cam, crop, R, T, profile.style, room,
                                  dict(cam_light, blur=rng.uniform(0.2, 0.9)), rng,
                                  size=IMAGE_SIZE, extra=chair)
            out["images"].append(image)
            out["poses"].append(pose)
            out["camera"].append(cam)
            out["frame"].append(f)
            out["box"].append(crop)
    result = {key: np.array(value) for key, value in out.items()}
    result.update(subject=subject, action=action, subaction=subaction)
    return result


# ============================================================================ the whole dataset
def tasks(seed, scale, subjects=h36m.ALL_SUBJECTS, actions=h36m.ACTIONS):
    return [(s, a, sub, seed, scale) for s in subjects for a in actions for sub in SUBACTIONS]


def generate(path, scale=1.0, seed=0, workers=None, subjects=h36m.ALL_SUBJECTS, actions=h36m.ACTIONS,
             progress=True):
    """Generate the synthetic dataset into `path` (atomically). Returns the path.

    scale multiplies the frames per sequence (FRAMES_PER_SEQUENCE at scale 1); workers: processes
    (None: all cores; 1: in this process). The result does not depend on `workers`.
    """
    from tqdm import tqdm

    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    todo = tasks(seed, scale, subjects, actions)
    n_images = len(todo) * len(h36m.CAMERA_IDS) * frames_per_sequence(scale)
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    settings = dict(generator="data.synth", version=GENERATOR_VERSION, scale=float(scale), seed=int(seed),
                    subjects=list(subjects), actions=list(actions), image_size=IMAGE_SIZE,
                    frames_per_sequence=frames_per_sequence(scale), box_margin=h36m.BOX_MARGIN)
    start = time.time()
    # No compression: the sensor noise leaves gzip only 25% to save, at a cost of ~1.3 ms per image
    # in the writing process, which competes with the renderers for the same cores.
    with DatasetWriter(path, source="synthetic", cameras=h36m.cameras_json(subjects),
                       generator=settings, compression=None) as writer:
        for s in subjects:
            writer.set_tpose(s, SubjectProfile(s, seed).tpose())
        bar = tqdm(total=n_images, unit="img", desc="synthetic H36M", disable=not progress,
                   dynamic_ncols=True)
        with _pool(workers) as pool:
            results = pool.imap(render_sequence, todo) if pool else map(render_sequence, todo)
            for r in results:
                writer.append(r["images"], r["poses"], r["subject"], r["action"], r["subaction"],
                              r["camera"], r["frame"], box=r["box"])
                bar.update(len(r["images"]))
        bar.close()
    log.info("wrote %s: %d images in %.1f s", path, n_images, time.time() - start)
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


def _matches(path, scale, seed):
    """Why the cached file at `path` cannot be reused, or None if it can."""
    try:
        with PoseDataset(path) as ds:
            g = ds.generator or {}
            if ds.source != "synthetic":
                return f"its source is {ds.source}"
            for key, want in (("version", GENERATOR_VERSION), ("scale", float(scale)), ("seed", int(seed)),
                              ("subjects", list(h36m.ALL_SUBJECTS)), ("actions", list(h36m.ACTIONS))):
                if g.get(key) != want:
                    return f"its generator {key} is {g.get(key)!r}, not {want!r}"
    except DatasetError as e:
        return str(e)
    return None


def ensure_synthetic(path=None, scale=1.0, seed=0, workers=None, progress=True):
    """Path of the synthetic dataset for (scale, seed), generating it only if missing or stale.

    path None: default_path(scale, seed) under ./cache/. A file whose generator attributes do
    not match the settings is regenerated (with a log message saying why).
    """
    path = default_path(scale, seed) if path is None else str(path)
    if os.path.exists(path):
        reason = _matches(path, scale, seed)
        if reason is None:
            return path
        log.warning("regenerating %s: %s", path, reason)
    return generate(path, scale=scale, seed=seed, workers=workers, progress=progress)

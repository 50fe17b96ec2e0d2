"""The synthetic Human3.6M-like dataset: the project's embedded default, generated on any machine.

Seven subjects (S1, S5, S6, S7, S8 for training; S9, S11 for testing) with their own body
proportions (1.55-1.90 m), build and clothes perform the 15 actions, two sub-actions each
(data.motion: joint angles within the limits of data.skeleton, 50 Hz). The four Human3.6M cameras
(real intrinsics and the subject's real extrinsics) film them in a textured room; each sampled
frame is ray-cast (data.render) straight into a 128x128 square crop around the projected body.

    python -m data.synth --out FILE.h5 [--scale S] [--seed N] [--workers W]
    python -m data.synth --preview FILE.png [--data FILE.h5]

Generation is deterministic for a seed whatever the number of worker processes: every
(subject, action, sub-action) sequence draws from its own generator, seeded by its names.
"""
import argparse
import logging
import multiprocessing
import os
import sys
import time

import numpy as np

from data import h36m, motion, render
from data import skeleton as sk
from data.dataset import DatasetError, DatasetWriter, PoseDataset

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
IMAGE_SIZE = 128
FRAMES_PER_SEQUENCE = 12        # per camera, at scale 1: 7 x 15 x 2 x 4 x 12 = 10,080 images
DURATION = (24.0, 36.0)         # seconds of motion simulated per sequence
BOX_MARGIN = 0.2                # crop side = (1 + margin) x the larger extent of the 2D joints
SUBACTIONS = (1, 2)


def default_path(scale=1.0, seed=0):
    """cache/synth_h36m_v<version>_scale<scale>_seed<seed>.h5 (relative to the working directory)."""
    return os.path.join("cache", f"synth_h36m_v{GENERATOR_VERSION}_scale{scale:g}_seed{seed}.h5")


def frames_per_sequence(scale):
    return max(1, int(round(FRAMES_PER_SEQUENCE * scale)))


# ============================================================================ subjects
_SKIN = np.array([[0.93, 0.76, 0.62], [0.85, 0.64, 0.48], [0.72, 0.52, 0.36], [0.55, 0.38, 0.25],
                  [0.40, 0.27, 0.18], [0.96, 0.82, 0.70]])
_HAIR = np.array([[0.06, 0.05, 0.04], [0.25, 0.16, 0.08], [0.45, 0.32, 0.16], [0.75, 0.62, 0.38],
                  [0.55, 0.55, 0.55], [0.14, 0.09, 0.06]])
_PANTS = np.array([[0.12, 0.15, 0.28], [0.2, 0.2, 0.22], [0.08, 0.08, 0.09], [0.55, 0.48, 0.35],
                   [0.3, 0.36, 0.5], [0.35, 0.22, 0.15], [0.6, 0.6, 0.62]])


def _hsv(h, s, v):
    """One HSV colour (components in [0,1]) -> RGB (3,)."""
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


class SubjectProfile:
    """A synthetic subject: height (mm), Skeleton, BodyStyle. Drawn from [seed, subject index]."""

    def __init__(self, subject, seed):
        k = h36m.ALL_SUBJECTS.index(subject)
        rng = np.random.default_rng([seed, 1, k])
        self.subject = subject
        # Heights spread over 1.55-1.90 m: a jittered grid in a seeded order, so no two subjects
        # are alike and both test subjects are not accidentally the same size.
        slots = np.random.default_rng([seed, 0]).permutation(len(h36m.ALL_SUBJECTS))
        self.height = 1550.0 + (slots[k] + rng.uniform(0.1, 0.9)) * 350.0 / len(h36m.ALL_SUBJECTS)
        base = sk.Skeleton.from_height(self.height).bone_lengths.copy()
        # Individual proportions: one factor per left/right bone pair, a few percent.
        factors = np.ones(h36m.N_JOINTS)
        for j in range(1, h36m.N_JOINTS):
            mirror = h36m.FLIP_PERMUTATION[j]
            factors[j] = factors[mirror] if mirror < j else np.clip(rng.normal(1.0, 0.04), 0.9, 1.1)
        self.skeleton = sk.Skeleton(base * factors)
        albedo = np.zeros((render.N_MATERIALS, 3))
        albedo[render.SKIN] = _SKIN[rng.integers(len(_SKIN))] * rng.uniform(0.95, 1.05, 3)
        albedo[render.SHIRT] = _hsv(rng.random(), rng.uniform(0.1, 0.85), rng.uniform(0.25, 0.95))
        albedo[render.PANTS] = _PANTS[rng.integers(len(_PANTS))] * rng.uniform(0.85, 1.15)
        albedo[render.SHOES] = [0.08, 0.08, 0.08] if rng.random() < 0.6 else [0.85, 0.85, 0.82]
        albedo[render.HAIR] = _HAIR[rng.integers(len(_HAIR))]
        albedo[render.EYE] = [0.04, 0.03, 0.03]
        albedo[render.LIPS] = albedo[render.SKIN] * [0.8, 0.55, 0.55]
        albedo[render.CHAIR] = _hsv(rng.uniform(0.05, 0.12), rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.6))
        long_sleeves = rng.random() < 0.5
        albedo[render.SLEEVE] = albedo[render.SHIRT]
        stripes = (rng.uniform(0.15, 0.35), rng.uniform(60, 160)) if rng.random() < 0.35 else (0.0, 100.0)
        self.style = render.BodyStyle(self.height, rng.uniform(0.88, 1.22), np.clip(albedo, 0, 1),
                                      rng.uniform(0, 1), long_sleeves, stripes)

    def tpose(self):
        return self.skeleton.tpose()


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
            crop = h36m.square_box(h36m.project(pose, cam), BOX_MARGIN)
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
                    frames_per_sequence=frames_per_sequence(scale), box_margin=BOX_MARGIN)
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


# ============================================================================ preview
def preview(png_path, data=None, seed=0, n_rows=5, n_cols=9):
    """Write a grid of samples with their projected ground-truth skeletons (left blue, right red).

    data: a dataset file to sample from; None renders fresh samples (one per action, varied
    subjects and cameras) without writing a dataset.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = n_rows * n_cols
    rng = np.random.default_rng(seed)
    if data is not None:
        with PoseDataset(data) as ds:
            idx = np.sort(rng.choice(ds.n, size=min(n, ds.n), replace=False))
            images, poses = ds.read_images(idx), ds.poses(idx)
            meta = ds.metadata(idx)
            boxes = ds.boxes(idx)
            labels = [f"{s} {a} {c[:2]}" for s, a, c in zip(meta["subject"], meta["action"], meta["camera"])]
            cams = meta["camera"]
    else:
        images, poses, boxes, cams, labels = [], [], [], [], []
        for k in range(n):
            subject = h36m.ALL_SUBJECTS[k % len(h36m.ALL_SUBJECTS)]
            action = h36m.ACTIONS[k % len(h36m.ACTIONS)]
            r = render_sequence((subject, action, 1 + k % 2, seed, 1.0 / FRAMES_PER_SEQUENCE))
            j = rng.integers(len(r["images"]))
            images.append(r["images"][j])
            poses.append(r["poses"][j])
            boxes.append(r["box"][j])
            cams.append(r["camera"][j])
            labels.append(f"{subject} {action} {r['camera'][j][:2]}")
        images, poses, boxes = np.array(images), np.array(poses), np.array(boxes)
    uv = [h36m.project_to_crop(p[None], c, b[None], IMAGE_SIZE)[0] for p, c, b in zip(poses, cams, boxes)]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * 2.0, n_rows * 2.15))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, p, label in zip(axes.ravel(), images, uv, labels):
        ax.imshow(image, extent=(0, IMAGE_SIZE, IMAGE_SIZE, 0))
        for j, parent in enumerate(h36m.PARENTS):
            if parent < 0:
                continue
            colour = "tab:blue" if j in h36m.LEFT_JOINTS else "tab:red" if j in h36m.RIGHT_JOINTS else "w"
            ax.plot(p[[j, parent], 0], p[[j, parent], 1], "-", color=colour, lw=1.0, alpha=0.8)
        ax.set_title(label, fontsize=6.5)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.97, bottom=0.01, wspace=0.04, hspace=0.18)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path


# ============================================================================ command line
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data.synth", description=__doc__.split("\n")[0])
    g = parser.add_argument_group("generation")
    g.add_argument("--out", help="dataset file to write (default: the cache path for --scale/--seed)")
    g.add_argument("--scale", type=float, default=1.0,
                   help=f"size multiplier: {FRAMES_PER_SEQUENCE} frames per sequence and camera at 1 (default 1)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    g.add_argument("--force", action="store_true", help="regenerate even if a matching file exists")
    p = parser.add_argument_group("preview")
    p.add_argument("--preview", metavar="PNG", help="write a grid of samples with their skeletons")
    p.add_argument("--data", metavar="H5", help="sample the preview from this dataset file")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.data and not args.preview:
        parser.error("--data only goes with --preview")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.preview:
            if args.out:
                parser.error("--preview and --out are separate commands")
            preview(args.preview, data=args.data, seed=args.seed)
            print(f"wrote {args.preview}")
            return 0
        path = args.out or default_path(args.scale, args.seed)
        if args.force and os.path.exists(path):
            os.remove(path)
        start = time.time()
        path = ensure_synthetic(path, scale=args.scale, seed=args.seed, workers=args.workers)
        print(f"{path}: {os.path.getsize(path) / 2**20:.0f} MiB ({time.time() - start:.0f} s)")
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Annealed particle filter (Deutscher & Reid, IJCV 2005) fitting joint angles to a target pose.

StructNet-Avg(A)-APF (Li, Zhang, Chan, ICCV 2015, Sec. 5.2): the average of the top-A training
poses is not guaranteed to be a valid pose, so the joint angles of the test subject's template
skeleton are adjusted to minimise the MPJPE (eq. 8) to that average, starting from the angles of
one of the top-A poses; the converged angles are converted back to joint positions.

Particles are joint-angle vectors (data.skeleton: root orientation included; the root position
stays at the origin because poses are root-relative). One annealing run ("stage") over a set of
angles, the others held:
  layer m = 0..L-1:
    E_i   = MPJPE(forward(x_i), target) over the joints those angles move
    w_i   = exp(-beta_m E_i), beta_m chosen so that the particle survival rate
            alpha = (sum w)^2 / (P sum w^2) equals config.survival_rate (bisection)
    (last layer: stop) resample P particles in proportion to w (systematic resampling),
    then diffuse: x_i += N(0, sigma_m^2) clipped to the joint limits, sigma_m = sigma_0 shrink^m
  result: the particle of lowest E seen in any layer; the stage's start is one of the first
  layer's particles, so a stage never makes its own error worse.
The default runs four stages (partitioned annealing in the manner of Deutscher, Davison & Reid,
CVPR 2001): "torso" (root orientation, lumbar, spine swing; error on the hips, spine and thorax),
"girdle" (the upper-body twist and both clavicles' elevation and protraction; error on the
shoulders), then "limbs" (both legs, both arms and the neck/head, each a block with its own
weights and resampling: once the torso is fixed their errors are independent, so P particles
explore P^5 combinations), then "all" (every angle, full MPJPE, diffusion scaled by
refine_scale). stages=("all",) is the plain single-partition APF. The start itself is returned
where nothing better was found.
The root orientation is diffused on the rotation group (R exp([n]x), n ~ N(0, sigma_m^2 I)) and
stored back as a rotation vector, so it never meets the +-pi box of its components.
Each stage computes only the joints its blocks compare (Skeleton.part_joints, the held torso once
per image); the result is the plain formulation's bit for bit (tests/apf/reference_apf.py).
config.starts > 1 runs the filter from several starts per image and keeps the best run.
"""
from dataclasses import dataclass

import numpy as np

from data.h36m import JOINT_NAMES, N_JOINTS
from data.metrics import mpjpe
from data.skeleton import (
    N_ANGLES, PART_ANGLES, PARTS, ROOT_ANGLES, Skeleton, angle_index, clip_angles, matrix_to_rotvec, rotvec_to_matrix,
)
from nn import parallel

# Partitions of the body for the partitioned stages: angles and the joints they move, given the
# rest of the body. Limbs and the head are independent of each other once the torso is fixed
# (MPJPE is a sum over joints), so each can be weighted and resampled on its own joints' error.
# The torso block fits the trunk (root orientation, lumbar, spine swing) to its own joints, the
# "girdle" block then the upper-body twist and both clavicles (elevation, protraction) to the
# shoulders. Only the clavicles' azimuths (twist - left protraction, twist + right protraction)
# show in the joints, so the twist belongs with the clavicles; with the clavicles free in the
# torso block, two angles per shoulder let the shoulders fit whatever the trunk does (measured:
# the thorax landed twice as far from the target, bench/bench_apf.py's perturbed scenario 3.5 mm
# against 1.3 mm with the girdle split off). The clavicles cannot join the arm blocks: the neck
# hangs from the mean of the two protractions (data.skeleton), which would couple both arms to
# the head.
_PARTS = {
    "torso": (("root_x", "root_y", "root_z", "Lumbar_lat", "Spine_flex", "Spine_lat"), ("RHip", "LHip", "Spine", "Thorax")),
    "girdle": (("Spine_twist", "LClavicle_elev", "LClavicle_prot", "RClavicle_elev", "RClavicle_prot"),
               ("LShoulder", "RShoulder")),
    "rleg": (("RHip_flex", "RHip_abd", "RHip_rot", "RKnee_flex"), ("RKnee", "RFoot")),
    "lleg": (("LHip_flex", "LHip_abd", "LHip_rot", "LKnee_flex"), ("LKnee", "LFoot")),
    "head": (("Neck_flex", "Neck_lat", "Head_flex", "Head_lat"), ("Neck/Nose", "Head")),
    "larm": (("LShoulder_flex", "LShoulder_abd", "LShoulder_rot", "LElbow_flex"), ("LElbow", "LWrist")),
    "rarm": (("RShoulder_flex", "RShoulder_abd", "RShoulder_rot", "RElbow_flex"), ("RElbow", "RWrist")),
}
_BLOCKS = {
    name: (np.array([angle_index(a) for a in angles]), np.array([JOINT_NAMES.index(j) for j in joints]))
    for name, (angles, joints) in _PARTS.items()
}
# Stage name -> blocks annealed together (each block weighted and resampled on its own error).
STAGES = {
    "torso": ("torso",),
    "girdle": ("girdle",),
    "limbs": ("rleg", "lleg", "head", "larm", "rarm"),
    "all": ("all",),
}
_BLOCKS["all"] = (np.arange(N_ANGLES), np.arange(N_JOINTS))
# A block's errors are computed from Skeleton.part_joints of its body part (the girdle's from the
# torso's); the blocks of a part move exactly the angles that move that part once its parent frame
# is given, and compare its joints between them.
_BLOCK_PART = {b: ("torso" if b == "girdle" else b) for b in _PARTS}
for _part in PARTS:
    _mine = [b for b in _PARTS if _BLOCK_PART[b] == _part]
    assert sorted(j for b in _mine for j in _BLOCKS[b][1]) == list(PARTS[_part])
    assert sorted(i for b in _mine for i in _BLOCKS[b][0]) == sorted(angle_index(a) for a in PART_ANGLES[_part])


@dataclass(frozen=True)
class APFConfig:
    """Parameters of the annealed particle filter (defaults and their measurement: docs/apf.md).

    n_particles: particles per image; n_layers: annealing layers per stage; survival_rate: the
    target particle survival rate alpha in (0, 1) that sets beta in every layer; init_diffusion:
    standard deviation (radians, every angle) of the first diffusion of a stage; shrink: factor
    applied to the diffusion after each layer; stages: sequence of STAGES names run in order;
    refine_scale: factor on init_diffusion for an "all" stage that follows other stages; seed:
    random seed (image i of a call draws from SeedSequence([seed, i]), so a result does not
    depend on how many images are processed together); chunk: most filter runs (image, start
    pairs) processed at once by one thread (memory about chunk * n_particles * 3 kB per thread;
    the runs are split over nn.parallel's threads); starts: filter runs per image,
    each from its own start (the inits' first `starts`), keeping the one of lowest final error
    (start s > 0 of image i draws from SeedSequence([seed, i, s]); start 0 is the single-start run
    exactly, so more starts never give a higher error).
    """

    n_particles: int = 128
    n_layers: int = 14
    survival_rate: float = 0.3
    init_diffusion: float = 0.2
    shrink: float = 0.75
    stages: tuple = ("torso", "girdle", "limbs", "all")
    refine_scale: float = 0.25
    seed: int = 0
    chunk: int = 64
    starts: int = 1

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(self.stages))
        if int(self.n_particles) < 2:
            raise ValueError(f"n_particles: expected at least 2, got {self.n_particles}")
        if int(self.n_layers) < 1:
            raise ValueError(f"n_layers: expected at least 1, got {self.n_layers}")
        if not 0.0 < float(self.survival_rate) < 1.0:
            raise ValueError(f"survival_rate: expected a value in (0, 1), got {self.survival_rate}")
        if not float(self.init_diffusion) >= 0.0:
            raise ValueError(f"init_diffusion: expected a non-negative value, got {self.init_diffusion}")
        if not 0.0 < float(self.shrink) <= 1.0:
            raise ValueError(f"shrink: expected a value in (0, 1], got {self.shrink}")
        if not float(self.refine_scale) > 0.0:
            raise ValueError(f"refine_scale: expected a positive value, got {self.refine_scale}")
        if int(self.chunk) < 1:
            raise ValueError(f"chunk: expected at least 1, got {self.chunk}")
        if int(self.starts) < 1:
            raise ValueError(f"starts: expected at least 1, got {self.starts}")
        unknown = [s for s in self.stages if s not in STAGES]
        if not self.stages or unknown:
            raise ValueError(f"stages: expected a non-empty sequence of {', '.join(STAGES)}, got {self.stages!r}")


def _check_poses(poses, name):
    p = np.asarray(poses, dtype=np.float64)
    if p.ndim != 3 or p.shape[1:] != (N_JOINTS, 3):
        raise ValueError(f"{name}: expected shape (N, {N_JOINTS}, 3), got {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return p - p[:, :1]


def survival_rate(weights):
    """Particle survival rate (Deutscher & Reid): (sum w)^2 / (P sum w^2) of weights (..., P) -> (...,)."""
    w = np.asarray(weights, dtype=np.float64)
    return w.sum(axis=-1) ** 2 / (w.shape[-1] * np.maximum((w * w).sum(axis=-1), 1e-300))


def choose_beta(errors, alpha, iterations=24):
    """beta (N,) such that weights exp(-beta E) of errors (N, P) have survival rate alpha.

    The survival rate falls monotonically from 1 (beta = 0) towards 1/(number of minimisers) as
    beta grows, so bisection on log(beta) converges; beta is expressed in units of 1/spread of E
    so one bracket suits any error scale. Where alpha cannot be reached (all errors equal),
    beta = 0. Rows are independent (the filter passes all blocks of a stage in one call).
    """
    e = np.asarray(errors, dtype=np.float64)
    e = e - e.min(axis=-1, keepdims=True)
    spread = np.maximum(e.mean(axis=-1), 1e-12)
    lo, hi = np.full(e.shape[0], -12.0), np.full(e.shape[0], 12.0)   # log(beta * spread)
    minus_spread = -spread
    w = np.empty_like(e)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        # survival_rate(np.exp(-beta[:, None] * e)) with beta = exp(mid) / spread, in one buffer
        np.multiply((np.exp(mid) / minus_spread)[:, None], e, out=w)
        np.exp(w, out=w)
        total = w.sum(axis=-1)
        np.multiply(w, w, out=w)
        too_sharp = total ** 2 / (w.shape[-1] * np.maximum(w.sum(axis=-1), 1e-300)) < alpha
        np.copyto(hi, mid, where=too_sharp)
        np.copyto(lo, mid, where=~too_sharp)
    beta = np.exp((lo + hi) / 2) / spread
    return np.where(e.max(axis=-1) > 0, beta, 0.0)


def _systematic_resample(weights, uniforms):
    """Indices (N, P) drawn in proportion to weights (N, P); uniforms (N,) in [0, 1)."""
    return _systematic_resample_blocks(np.asarray(weights)[None], np.asarray(uniforms)[:, None])[0]


def _systematic_resample_blocks(weights, uniforms):
    """Indices (B, N, P) drawn in proportion to each block's weights (B, N, P); uniforms (N, B).

    Block by block the same as one call per block (the elementwise work is done for all blocks).
    """
    b, n, p = weights.shape
    c = np.cumsum(weights / weights.sum(axis=2, keepdims=True), axis=2)
    c[..., -1] = 1.0
    rows = np.arange(n)[:, None]
    # One searchsorted per block for all images: row r's cumulative sums are shifted into [r, r + 1].
    positions = (uniforms.T[..., None] + np.arange(p)) / p + rows
    c += rows
    idx = np.stack([np.searchsorted(c[k].ravel(), positions[k].ravel(), side="right") for k in range(b)])
    idx = idx.reshape(b, n, p) - rows * p
    return np.clip(idx, 0, p - 1)


def _diffuse(x, sigma, noise, active=None):
    """Particles (N, P, N_ANGLES) moved by sigma * noise and clipped to the limits; root on SO(3).

    active: the angle columns noise (N, P, len(active)) moves (None: all; noise (N, P, N_ANGLES)).
    The other angles are copied unchanged (clip_angles would leave them as they are, up to the
    sign of a zero and rounding on a shoulder cone's boundary, neither of which reaches the
    joints the stage compares).
    """
    if active is None or len(active) == N_ANGLES:
        step = sigma * noise
        out = x + step
        if np.any(step[..., ROOT_ANGLES]):          # stages that hold the root skip the round trip
            R = rotvec_to_matrix(x[..., ROOT_ANGLES]) @ rotvec_to_matrix(step[..., ROOT_ANGLES])
            out[..., ROOT_ANGLES] = matrix_to_rotvec(R)
        return clip_angles(out)
    step = sigma * noise
    moved = x[..., active] + step
    if np.isin(active, [0, 1, 2]).any():
        if not np.array_equal(active[:3], [0, 1, 2]):
            raise ValueError("a stage that moves the root lists root_x, root_y, root_z first")
        if np.any(step[..., :3]):
            R = rotvec_to_matrix(x[..., ROOT_ANGLES]) @ rotvec_to_matrix(step[..., :3])
            moved[..., :3] = matrix_to_rotvec(R)
    out = x.copy()
    out[..., active] = clip_angles(moved, active)
    return out


def _joint_errors(joints, targets):
    """|joints - targets| of component-major (3, ...) vectors -> (...,): the value of np.linalg.norm
    over a last axis of 3 bit for bit (its sum of squares is (x^2 + y^2) + z^2)."""
    d = joints - targets
    d *= d
    return np.sqrt((d[0] + d[1]) + d[2])


def _block_errors(skeleton, x, targets, blocks, torso):
    """Errors (n, p) of particles x (n, p, N_ANGLES), per block: the MPJPE over the block's joints.

    targets: (3, n, 1, 17), component-major. Only the block's joints are computed
    (Skeleton.part_joints, equal to forward's bit for bit); torso: skeleton.torso_frames of the held
    angles where the stage holds the torso, else None.
    """
    parts = PARTS if blocks == ("all",) else tuple(dict.fromkeys(_BLOCK_PART[b] for b in blocks))
    J = skeleton.part_joints(x, parts, torso)
    J[0] = np.zeros((3, 1, 1))                   # the root, as forward() has it
    shape = x.shape[:-1]
    return {b: np.stack([np.broadcast_to(_joint_errors(J[j], targets[..., j]), shape) for j in _BLOCKS[b][1]],
                        axis=-1).mean(axis=-1)
            for b in blocks}


def _stage(skeleton, targets, current, blocks, sigma, config, rngs):
    """Anneal the angles of `blocks` (others fixed at current (n, N_ANGLES)) -> new current.

    Each block keeps its own best particle (lowest error on the block's joints): with the rest of
    the body fixed the block errors are independent, so the per-block bests combine.
    """
    n, p = current.shape[0], int(config.n_particles)
    active = np.concatenate([_BLOCKS[b][0] for b in blocks])
    rows = np.arange(n)
    last = int(config.n_layers) - 1
    # A stage that holds the torso takes its frames from the held angles, once.
    holds = blocks != ("all",) and all(_BLOCK_PART[b] != "torso" for b in blocks)
    torso = skeleton.torso_frames(current) if holds else None
    targets_t = np.ascontiguousarray(np.moveaxis(targets, -1, 0))[:, :, None]     # (3, n, 1, 17)

    def diffuse(x, sigma):
        noise = np.empty((n, p, active.size))
        for k, r in enumerate(rngs):
            r.standard_normal(out=noise[k])
        return _diffuse(x, sigma, noise, active)

    x = diffuse(np.repeat(current[:, None], p, axis=1), sigma)
    x[:, 0] = current                            # the stage's start stays among the particles
    best = current.copy()
    best_e = {b: np.full(n, np.inf) for b in blocks}
    for layer in range(int(config.n_layers)):
        errors = _block_errors(skeleton, x, targets_t, blocks, torso)
        for b in blocks:
            angles, e = _BLOCKS[b][0], errors[b]
            i = np.argmin(e, axis=1)
            better = e[rows, i] < best_e[b]
            best_e[b] = np.where(better, e[rows, i], best_e[b])
            best[np.ix_(rows[better], angles)] = x[rows[better], i[better]][:, angles]
        if layer == last:
            break
        e = np.concatenate([errors[b] for b in blocks])                  # (len(blocks) n, p)
        beta = choose_beta(e, float(config.survival_rate))
        w = np.exp(-beta[:, None] * (e - e.min(axis=1, keepdims=True)))
        uniforms = np.array([r.random(len(blocks)) for r in rngs])       # (n, blocks), as drawn per block
        flat = _systematic_resample_blocks(w.reshape(len(blocks), n, p), uniforms) + (rows * p)[:, None]
        if len(blocks) == 1 and active.size == N_ANGLES:
            resampled = np.take(x.reshape(n * p, N_ANGLES), flat[0].ravel(), axis=0).reshape(x.shape)
        else:
            resampled = x.copy()
            for k, b in enumerate(blocks):
                angles = _BLOCKS[b][0]
                resampled[..., angles] = np.take(x[..., angles].reshape(n * p, angles.size), flat[k].ravel(),
                                                 axis=0).reshape(n, p, angles.size)
        sigma *= float(config.shrink)
        x = diffuse(resampled, sigma)
    return best


def _filter_chunk(skeleton, targets, start_angles, config, rngs):
    """APF on a chunk of images: targets (n,17,3), start_angles (n,N_ANGLES) -> (angles, errors)."""
    current = start_angles
    for k, stage in enumerate(config.stages):
        sigma = float(config.init_diffusion) * (float(config.refine_scale) if k and stage == "all" else 1.0)
        current = _stage(skeleton, targets, current, STAGES[stage], sigma, config, rngs)
    both = np.stack([start_angles, current], axis=1)
    poses = skeleton.forward(both)
    err = mpjpe(poses, np.broadcast_to(targets[:, None], poses.shape))
    pick = np.argmin(err, axis=1)                 # never worse than the start
    return both[np.arange(len(pick)), pick], err[np.arange(len(pick)), pick]


def choose_starts(candidates, targets, starts):
    """Starts (N, S, 17, 3) for refine_poses with config.starts = S from candidate poses (N, K, 17, 3).

    Start 0 is candidates[:, 0] (StructNet-Avg(A)-APF: the top-1 pose, the single-start init);
    the other S - 1 are the candidates closest (MPJPE, root-relative) to the target (N, 17, 3) among
    the rest, nearest first. Measured on the default run's top-A poses it fits the target better
    than the next-ranked or evenly spaced ranks (docs/apf.md).
    """
    c = np.asarray(candidates)
    t = np.asarray(targets, dtype=np.float64)
    s = int(starts)
    if c.ndim != 4 or c.shape[2:] != (N_JOINTS, 3) or t.shape != (c.shape[0], N_JOINTS, 3):
        raise ValueError(f"candidates (N, K, {N_JOINTS}, 3) and targets (N, {N_JOINTS}, 3) expected, got "
                         f"{c.shape} and {t.shape}")
    if not 1 <= s <= c.shape[1]:
        raise ValueError(f"starts: expected 1 to {c.shape[1]} (the candidates per image), got {starts}")
    if s == 1:
        return c[:, :1]
    rel = c[:, 1:] - c[:, 1:, :1]
    err = mpjpe(rel, np.broadcast_to((t - t[:, :1])[:, None], rel.shape))
    near = np.argsort(err, axis=1, kind="stable")[:, :s - 1] + 1
    return np.concatenate([c[:, :1], np.take_along_axis(c, near[:, :, None, None], axis=1)], axis=1)


def refine_angles(skeleton, targets, init_angles, config=APFConfig()):
    """APF fit: targets (N,17,3), init_angles (N,N_ANGLES) or (N,K,N_ANGLES) with K >= config.starts
    -> (angles (N,N_ANGLES), mpjpe (N,)).

    With config.starts = S the filter runs from each of the first S starts of an image and keeps
    the run of lowest final error (the first on a tie, so start 0's run, the single-start result,
    is never beaten by a worse one). targets are made root-relative; the returned angles are within
    the joint limits and mpjpe is the error (eq. 8, mm) of forward(angles) to the target.
    """
    if not isinstance(skeleton, Skeleton):
        raise ValueError(f"skeleton: expected a data.skeleton.Skeleton, got {type(skeleton).__name__}")
    targets = _check_poses(targets, "targets")
    init = np.asarray(init_angles, dtype=np.float64)
    n, s = targets.shape[0], int(config.starts)
    if init.ndim == 2:
        init = init[:, None]
    if init.ndim != 3 or init.shape[0] != n or init.shape[2] != N_ANGLES:
        raise ValueError(f"init_angles: expected shape ({n}, {N_ANGLES}) or ({n}, K, {N_ANGLES}), got "
                         f"{np.shape(init_angles)}")
    if init.shape[1] < s:
        raise ValueError(f"init_angles: {s} starts per image asked for (starts), {init.shape[1]} given")
    init = clip_angles(init[:, :s].reshape(n * s, N_ANGLES))
    # Filter runs (image i, start k) in image-major order; run (i, 0) draws as a single start would.
    seeds = [[int(config.seed), i] + ([k] if k else []) for i in range(n) for k in range(s)]
    run_targets = np.repeat(targets, s, axis=0) if s > 1 else targets
    angles, errors = np.empty_like(init), np.empty(n * s)
    runs = n * s
    # Chunks are independent (each run draws from its own seed), so they run on nn.parallel's
    # threads, at most config.chunk runs each and at least one chunk per thread; NumPy releases
    # the GIL in its loops. The result is the same bits for any chunking (tested).
    chunk = max(1, min(int(config.chunk), -(-runs // parallel.threads())))
    chunks = [(start, min(start + chunk, runs)) for start in range(0, runs, chunk)]

    def run_chunks(which):
        for start, stop in chunks[which]:
            rngs = [np.random.default_rng(np.random.SeedSequence(seeds[r])) for r in range(start, stop)]
            angles[start:stop], errors[start:stop] = _filter_chunk(skeleton, run_targets[start:stop],
                                                                   init[start:stop], config, rngs)
    with parallel.single_threaded_blas():
        parallel.for_blocks(run_chunks, len(chunks))
    if s == 1:
        return angles, errors
    errors = errors.reshape(n, s)
    pick = np.argmin(errors, axis=1)              # the first of the lowest: start 0 on a tie
    return angles.reshape(n, s, N_ANGLES)[np.arange(n), pick], errors[np.arange(n), pick]


def refine_poses(skeleton, targets, inits, config=APFConfig()):
    """StructNet-Avg(A)-APF: valid poses (N,17,3) of `skeleton` closest (MPJPE) to targets (N,17,3).

    targets: the Avg(A) poses; inits: one of the top-A poses per image (N,17,3), or K >= config.starts
    of them (N,K,17,3) (their joint angles, through skeleton.inverse, start the filter; see
    refine_angles); both root-relative camera coordinates in mm (the root orientation absorbs the
    camera rotation). The output has the skeleton's bone lengths exactly, angles within the limits,
    and the root at the origin.
    """
    if not isinstance(skeleton, Skeleton):
        raise ValueError(f"skeleton: expected a data.skeleton.Skeleton, got {type(skeleton).__name__}")
    targets = _check_poses(targets, "targets")
    shape = np.shape(inits)
    many = len(shape) == 4
    inits = _check_poses(np.reshape(inits, (-1,) + tuple(shape[2:])) if many else inits, "inits")
    if many:
        if shape[0] != targets.shape[0]:
            raise ValueError(f"inits: expected shape ({targets.shape[0]}, K, {N_JOINTS}, 3), got {shape}")
        inits = inits.reshape(shape)
    elif inits.shape != targets.shape:
        raise ValueError(f"inits: expected shape {targets.shape} like targets, got {inits.shape}")
    angles, _ = refine_angles(skeleton, targets, skeleton.inverse(inits), config)
    return skeleton.forward(angles)

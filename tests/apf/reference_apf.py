"""The APF as first written (commit f12a484), before the speed-ups: one full forward() per layer,
np.linalg.norm, one resampling per block. The filter must reproduce it bit for bit (the README's
StructNet-Avg(A)-APF figures were measured with it); tests only."""
import numpy as np

from apf.filter import _BLOCKS, STAGES
from data.metrics import mpjpe
from data.skeleton import N_ANGLES, ROOT_ANGLES, clip_angles, matrix_to_rotvec, rotvec_to_matrix


def _survival_rate(w):
    return w.sum(axis=-1) ** 2 / (w.shape[-1] * np.maximum((w * w).sum(axis=-1), 1e-300))


def _choose_beta(errors, alpha, iterations=24):
    e = errors - errors.min(axis=-1, keepdims=True)
    spread = np.maximum(e.mean(axis=-1), 1e-12)
    lo, hi = np.full(e.shape[0], -12.0), np.full(e.shape[0], 12.0)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        beta = np.exp(mid) / spread
        too_sharp = _survival_rate(np.exp(-beta[:, None] * e)) < alpha
        hi = np.where(too_sharp, mid, hi)
        lo = np.where(too_sharp, lo, mid)
    beta = np.exp((lo + hi) / 2) / spread
    return np.where(e.max(axis=-1) > 0, beta, 0.0)


def _resample(weights, uniforms):
    n, p = weights.shape
    c = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    c[:, -1] = 1.0
    rows = np.arange(n)[:, None]
    positions = (uniforms[:, None] + np.arange(p)[None, :]) / p + rows
    idx = np.searchsorted((c + rows).ravel(), positions.ravel(), side="right").reshape(n, p) - rows * p
    return np.clip(idx, 0, p - 1)


def _diffuse(x, sigma, noise):
    step = sigma * noise
    out = x + step
    if np.any(step[..., ROOT_ANGLES]):
        R = rotvec_to_matrix(x[..., ROOT_ANGLES]) @ rotvec_to_matrix(step[..., ROOT_ANGLES])
        out[..., ROOT_ANGLES] = matrix_to_rotvec(R)
    return clip_angles(out)


def _stage(skeleton, targets, current, blocks, sigma, config, rngs):
    n, p = current.shape[0], int(config.n_particles)
    active = np.concatenate([_BLOCKS[b][0] for b in blocks])
    rows = np.arange(n)

    def diffuse(x, sigma):
        noise = np.zeros(x.shape)
        noise[..., active] = np.stack([r.standard_normal((p, active.size)) for r in rngs])
        return _diffuse(x, sigma, noise)

    x = diffuse(np.repeat(current[:, None], p, axis=1), sigma)
    x[:, 0] = current
    best = current.copy()
    best_e = {b: np.full(n, np.inf) for b in blocks}
    for layer in range(int(config.n_layers)):
        joint_err = np.linalg.norm(skeleton.forward(x) - targets[:, None], axis=-1)
        idx = np.empty((len(blocks), n, p), dtype=np.intp)
        for k, b in enumerate(blocks):
            angles, joints = _BLOCKS[b]
            e = joint_err[..., joints].mean(axis=-1)
            i = np.argmin(e, axis=1)
            better = e[rows, i] < best_e[b]
            best_e[b] = np.where(better, e[rows, i], best_e[b])
            best[np.ix_(rows[better], angles)] = x[rows[better], i[better]][:, angles]
            if layer < int(config.n_layers) - 1:
                beta = _choose_beta(e, float(config.survival_rate))
                w = np.exp(-beta[:, None] * (e - e.min(axis=1, keepdims=True)))
                idx[k] = _resample(w, np.array([r.random() for r in rngs]))
        if layer == int(config.n_layers) - 1:
            break
        resampled = x.copy()
        for k, b in enumerate(blocks):
            angles = _BLOCKS[b][0]
            resampled[..., angles] = x[rows[:, None], idx[k]][..., angles]
        sigma *= float(config.shrink)
        x = diffuse(resampled, sigma)
    return best


def reference_refine_angles(skeleton, targets, init, config):
    """refine_angles of commit f12a484: targets (N,17,3) root-relative, init (N,N_ANGLES)."""
    init = clip_angles(np.asarray(init, dtype=np.float64))
    angles, errors = np.empty_like(init), np.empty(len(init))
    for start in range(0, len(init), int(config.chunk)):
        stop = min(start + int(config.chunk), len(init))
        rngs = [np.random.default_rng(np.random.SeedSequence([int(config.seed), i])) for i in range(start, stop)]
        t, current = targets[start:stop], init[start:stop]
        for k, stage in enumerate(config.stages):
            sigma = float(config.init_diffusion) * (float(config.refine_scale) if k and stage == "all" else 1.0)
            current = _stage(skeleton, t, current, STAGES[stage], sigma, config, rngs)
        both = np.stack([init[start:stop], current], axis=1)
        poses = skeleton.forward(both)
        err = mpjpe(poses, np.broadcast_to(t[:, None], poses.shape))
        pick = np.argmin(err, axis=1)
        angles[start:stop], errors[start:stop] = both[np.arange(len(pick)), pick], err[np.arange(len(pick)), pick]
    return angles, errors

"""The pose bank: the paper's approximation of the pose space (Sec. 5.2), its embeddings and its floor.

The bank is the data file's dense pose bank of the model's training subjects (and actions)
(pose_space: the same set is Algorithm 1's pose space Y in training); a file without a bank/
group falls back to the training image rows. Its embeddings f_J (eq. 3) do not depend on the
image, so they are computed once per model and cached beside the model file (<model>.bank.npz),
keyed by a fingerprint of the pose branch's parameters, the normaliser and the bank poses: a
stale cache is never used. nearest_pose is the bank floor: the error of the nearest bank pose,
what a perfect retrieval from the bank would score.
"""
import hashlib
import os
from dataclasses import dataclass

import numpy as np

from data.dataset import DatasetError, root_relative
from data.h36m import POSE_DIM
from data.metrics import mpjpe, pairwise_mpjpe
from nn import backend
from nn.params import save_npz_atomic

from .inference import pose_embeddings, to_host
from .trained_run import EvalError

BANK_FORMAT = 2


def pose_space(dataset, subjects, actions=None):
    """The pose space Y of Algorithm 1 and the evaluation's pose bank, one set for both (Sec. 5.3:
    "all the poses in the training set"): the dense bank entries of subjects and actions (None =
    all) of a data.dataset.PoseDataset, whose image rows are the bank when the file has none.
    -> (bank indices (M,) int64, poses (M, 17, 3) float32, root-relative mm). DatasetError for a
    subject or action the file's bank does not hold."""
    bidx = dataset.bank_select(subjects=list(subjects), actions=None if actions is None else list(actions))
    return bidx, root_relative(dataset.bank_poses(bidx)).astype(np.float32)


def training_poses(dataset, subjects, actions, data_path):
    """pose_space for the evaluation: EvalError naming the data file when it holds none of them."""
    try:
        bidx, poses = pose_space(dataset, subjects, actions)
    except DatasetError as err:
        raise EvalError(f"the pose bank (the model's training poses) cannot be built from {data_path}: "
                        f"{err}") from None
    if len(bidx) == 0:
        raise EvalError(f"{data_path} holds no training poses of {','.join(subjects)}")
    return bidx, poses


def check_normalizer(normalizer, bank_mm, data_path, model_path):
    """EvalError when the training poses of the data file do not fit the model's pose normaliser.

    On the data the model was trained on every normalised coordinate spans exactly [-0.9, 0.9]
    (PoseNormalizer.fit). Another data file in the same units and conventions stays near that;
    poses in other units (metres), another joint order or another normalisation spread over a
    sliver of it or far beyond it. Criteria: the median over coordinates of the normalised range
    (max - min) within a factor 4 of 1.8, and at most 5% of the values beyond |z| = 1.5.
    """
    z = normalizer.normalize(bank_mm).astype(np.float64)
    varying = np.ptp(np.asarray(bank_mm, dtype=np.float64).reshape(-1, POSE_DIM), axis=0) > 0
    spread = float(np.median(np.ptp(z[:, varying], axis=0))) if varying.any() and len(z) > 1 else 1.8
    outside = float((np.abs(z) > 1.5).mean())
    if outside > 0.05 or not 0.45 <= spread <= 7.2:
        raise EvalError(f"{model_path} and {data_path} disagree: through the model's pose normaliser the data's "
                        f"training poses span {spread:.3g} (median normalised range; 1.8 on the model's own "
                        f"training data) with {100 * outside:.1f}% of coordinates beyond 1.5: another data file, "
                        "units or normalisation?")


def _pose_param_names(net):
    return [n for layer in net.pose.layers for n in layer.param_shapes()]


def bank_fingerprint(net, params, normalizer, bank_mm):
    """sha256 of what the bank embeddings depend on: the pose branch (kind, parameter names, shapes,
    dtypes, values), the pose normaliser and the bank poses."""
    h = hashlib.sha256()
    h.update(f"bank{BANK_FORMAT}:{net.cfg.pose_embedding}".encode())
    for name in _pose_param_names(net):
        a = np.ascontiguousarray(to_host(params[name]))
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    h.update(normalizer.offset.tobytes())
    h.update(normalizer.scale.tobytes())
    h.update(np.ascontiguousarray(bank_mm, dtype=np.float32).tobytes())
    return h.hexdigest()


def bank_cache_path(model_path):
    """model.npz -> model.bank.npz beside it."""
    root, _ = os.path.splitext(str(model_path))
    return root + ".bank.npz"


@dataclass
class Bank:
    poses: np.ndarray      # (M, 17, 3) float32, root-relative mm
    index: np.ndarray      # (M,) int64 entries of the data file's pose bank (PoseDataset.bank_poses)
    rows: np.ndarray       # (M,) int64 image rows showing them, -1 for pose-only entries
    emb: object            # (M, D) f_J on the evaluation device
    fingerprint: str
    source: str            # "cache" | "computed" | "computed (not cached: reason)"


def load_or_build_bank(model, bank_mm, index, rows, cache=True, chunk=8192):
    """Embeddings f_J (eq. 3) of the bank poses for a trained_run.LoadedModel, from the cache when
    it is valid; index and rows as Bank's."""
    fp = bank_fingerprint(model.net, model.params, model.normalizer, bank_mm)
    path = bank_cache_path(model.path)
    xp = backend.get_array_module(model.params[next(iter(model.params))])
    if cache and os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["fingerprint"]) == fp and z["emb"].shape[0] == len(bank_mm):
                    return Bank(bank_mm, index, rows, xp.asarray(z["emb"]), fp, "cache")
        except Exception:  # unreadable or foreign file: recompute and replace it
            pass
    emb = pose_embeddings(model.net, model.params, model.normalizer.normalize(bank_mm), chunk)
    source = "computed"
    if cache:
        try:
            save_npz_atomic(path, {"fingerprint": np.array(fp), "emb": to_host(emb).astype(np.float32),
                                   "index": index, "rows": rows, "format": np.array(BANK_FORMAT)})
        except OSError as err:
            source = f"computed (not cached: {path}: {err.strerror or err})"
    return Bank(bank_mm, index, rows, emb, fp, source)


# ============================================================================ the bank floor
# Speed only (nearest_pose is exact for any values); chosen by timing a 179,800-pose bank against
# 2,880 test poses on the 2-core machine (docs/eval.md): sqrt(M) clusters, one Lloyd iteration.
KMEANS_ITERS = 1          # Lloyd iterations of the clustering that drives the pruning
SEED_CLUSTERS = 2         # nearest clusters per pose searched in full before the pruned sweep
GROUP_FACTOR = 2          # poses of one block need between 1/GROUP_FACTOR and all of its members


def _slack(best):
    """Margin added to every pruning bound: 1e-3 mm + 1e-5 relative, above the float32 rounding of
    pairwise_mpjpe (~1e-6 relative), so a bank pose that could tie or beat the best is never pruned."""
    return 1e-3 + 1e-5 * best


def _clusters(flat, k, iters, block=8192):
    """k-means in L2 of rows flat (M, D) float32 -> (labels (M,) in 0..K-1, means (K, D) float64) over
    the K <= k non-empty clusters: centres started at evenly spaced rows, `iters` Lloyd iterations,
    one GEMM per block. Any partition keeps nearest_pose exact; a tighter one prunes more."""
    M = len(flat)
    centres = flat[np.linspace(0, M - 1, k).astype(np.int64)].copy()
    for it in range(iters + 1):
        labels = np.empty(M, np.int64)
        c2 = (centres * centres).sum(axis=1)
        for s in range(0, M, block):
            g = flat[s:s + block] @ centres.T
            g *= -2
            g += c2
            labels[s:s + block] = g.argmin(axis=1)
        ids, labels, counts = np.unique(labels, return_inverse=True, return_counts=True)
        order = np.argsort(labels, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        means = np.add.reduceat(flat[order].astype(np.float64), starts, axis=0) / counts[:, None]
        centres[ids] = means.astype(np.float32)
    return labels, means


def nearest_pose(bank_mm, poses_mm, n_clusters=None, iters=KMEANS_ITERS):
    """The bank floor: for every pose of poses_mm (N, 17, 3), the smallest MPJPE (eq. 8) to a pose of
    bank_mm (M, 17, 3) -> (floor (N,) float32 mm, index (N,) int64 of a nearest bank pose).

    The best any retrieval from the bank could do (StructNet-Max with a perfect score). Exact:
    floor equals pairwise_mpjpe(poses_mm, bank_mm).min(axis=1) value for value (tested), from a
    fraction of its pairs. MPJPE is a metric (a sum of Euclidean distances), so for a cluster centre
    c, MPJPE(q, b) >= MPJPE(q, c) - MPJPE(c, b). The bank is clustered (k-means in L2, sqrt(M)
    clusters unless n_clusters is given); each pose is searched in full in its SEED_CLUSTERS nearest clusters,
    then every other cluster is visited by the poses its radius does not rule out, and within it
    only by the members far enough from the centre to beat their current best. Bounds are float64
    with _slack to spare; the pairs computed go through pairwise_mpjpe in float32, as brute force
    would. On ties the index is one of the minimisers. Memory: O(N K) plus one (poses, cluster) block.
    """
    bank = np.ascontiguousarray(bank_mm, dtype=np.float32)
    q = np.ascontiguousarray(poses_mm, dtype=np.float32)
    M, N = len(bank), len(q)
    if M == 0:
        raise ValueError("nearest_pose: empty bank")
    k = np.sqrt(M) if n_clusters is None else n_clusters
    labels, means = _clusters(bank.reshape(M, -1), int(min(M, max(1, round(k)))), iters)
    centres = means.reshape((-1,) + bank.shape[1:])
    to_centre = mpjpe(bank.astype(np.float64), centres[labels])     # (M,) MPJPE(c, b)
    order = np.lexsort((-to_centre, labels))                          # by cluster, farthest first
    r_desc = -to_centre[order]                                        # ascending within each cluster
    starts = np.searchsorted(labels[order], np.arange(len(centres) + 1))
    D = pairwise_mpjpe(q.astype(np.float64), centres)                 # (N, K) MPJPE(q, c)
    floor = np.full(N, np.inf, np.float32)
    arg = np.zeros(N, np.int64)

    def visit(c, Q):
        """Poses Q against the members of cluster c that can still beat their best: b wins for q
        only if MPJPE(c, b) >= MPJPE(q, c) - best(q), a prefix of the cluster's members (n_q of
        them). One block per group of poses whose n_q lie within GROUP_FACTOR of each other: a
        block computes at most GROUP_FACTOR times the pairs its poses need, in few calls."""
        lo, hi = starts[c], starts[c + 1]
        need = D[Q, c] - floor[Q] - _slack(floor[Q])
        n_q = np.searchsorted(r_desc[lo:hi], -need, side="right")
        by = np.argsort(-n_q, kind="stable")
        Q, n_q = Q[by], n_q[by]
        a = 0
        while a < len(Q) and n_q[a] > 0:
            n = int(n_q[a])
            b = a + int(np.searchsorted(-n_q[a:], -(n // GROUP_FACTOR), side="left"))
            g = Q[a:b]
            d = pairwise_mpjpe(q[g], bank[order[lo:lo + n]])
            j = d.argmin(axis=1)
            v = d[np.arange(len(g)), j]
            better = v < floor[g]
            floor[g[better]] = v[better]
            arg[g[better]] = order[lo + j[better]]
            a = b

    seeds = np.argsort(D, axis=1, kind="stable")[:, :SEED_CLUSTERS]
    for r in range(seeds.shape[1]):
        for c in np.unique(seeds[:, r]):
            visit(c, np.flatnonzero(seeds[:, r] == c))
    radius = -r_desc[starts[:-1]]
    for c in np.argsort(np.median(D, axis=0), kind="stable"):
        Q = np.flatnonzero((D[:, c] - radius[c] <= floor + _slack(floor)) & (seeds != c).all(axis=1))
        if len(Q):
            visit(c, Q)
    return floor, arg

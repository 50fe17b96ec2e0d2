"""Pose-error metrics: pure functions over (..., J, 3) arrays in millimetres, and the bank floor
(nearest_pose: the nearest pose of a pose bank, exactly, by metric pruning).

Protocols:
  * MPJPE (Li, Zhang, Chan ICCV 2015, eq. 8; Ionescu et al. TPAMI 2014): the mean over joints of
    the Euclidean distance between corresponding joints, of the poses as given. The Human3.6M
    protocol of the paper passes root-relative poses (joint 0 subtracted) with all 17 joints,
    the root included (it then contributes 0).
  * P-MPJPE: MPJPE after the similarity Procrustes alignment (rotation, translation and uniform
    scale; no reflection) of the prediction onto the ground truth, per pose ("Protocol #2").
  * N-MPJPE (Rhodin et al. CVPR 2018; VideoPose3D's common/loss.py n_mpjpe): MPJPE after the
    least-squares scale of the prediction about the origin (no rotation, no translation), per
    pose; on root-relative poses that scale is about the root.
Averages over a test set (per frame or per action) are the caller's choice and must be stated.
"""
import numpy as np


def _check_pair(pred, gt, names=("pred", "gt")):
    pred, gt = np.asarray(pred), np.asarray(gt)
    for name, x in zip(names, (pred, gt)):
        if x.ndim < 2 or x.shape[-1] != 3:
            raise ValueError(f"{name}: expected shape (..., J, 3), got {x.shape}")
    if pred.shape != gt.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {pred.shape} and {gt.shape}")
    return pred, gt


def mpjpe(pred, gt):
    """Mean per-joint position error (eq. 8): (..., J, 3), (..., J, 3) -> (...,), units of the input."""
    pred, gt = _check_pair(pred, gt)
    return np.linalg.norm(pred - gt, axis=-1).mean(axis=-1)


def _float_dtype(*arrays):
    """float32 or float64 as NumPy promotes the arrays' types; float64 for integers or float16."""
    dtype = np.result_type(*[a.dtype for a in arrays])
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def pairwise_mpjpe(a, b, chunk=512):
    """MPJPE (eq. 8) of every pose of a (B,J,3) against every pose of b (C,J,3) -> (B,C).

    The margin of all C candidates against the B ground truths of a batch. Memory is bounded by
    two (B, chunk) work arrays besides the output. Computed in float32 when both inputs are
    float32 (about 10 ms for B=128, C=2010, J=17 on 2 cores; error ~1e-4 mm), otherwise in
    float64 (about 22 ms). Identical poses give exactly 0: the joints are differenced directly,
    never through |a|^2 + |b|^2 - 2ab, whose cancellation leaves tenths of a millimetre in float32.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"a: expected shape (B, J, 3), got {a.shape}")
    if b.ndim != 3 or b.shape[1:] != a.shape[1:]:
        raise ValueError(f"b: expected shape (C, {a.shape[1]}, 3) to match a, got {b.shape}")
    chunk = int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk: expected a positive integer, got {chunk}")
    dtype = _float_dtype(a, b)
    n_joints = a.shape[1]
    # Joint-and-coordinate-major copies: each (joint, coordinate) row is contiguous, so the
    # outer differences below stream through memory.
    at = np.ascontiguousarray(a.transpose(1, 2, 0), dtype=dtype)   # (J, 3, B)
    bt = np.ascontiguousarray(b.transpose(1, 2, 0), dtype=dtype)   # (J, 3, C)
    out = np.zeros((a.shape[0], b.shape[0]), dtype=dtype)
    sq = np.empty((a.shape[0], min(chunk, b.shape[0])), dtype=dtype)
    tmp = np.empty_like(sq)
    for start in range(0, b.shape[0], chunk):
        stop = min(start + chunk, b.shape[0])
        s, t, o = sq[:, :stop - start], tmp[:, :stop - start], out[:, start:stop]
        for j in range(n_joints):
            np.subtract(at[j, 0][:, None], bt[j, 0, start:stop][None, :], out=s)
            np.multiply(s, s, out=s)
            for k in (1, 2):
                np.subtract(at[j, k][:, None], bt[j, k, start:stop][None, :], out=t)
                np.multiply(t, t, out=t)
                s += t
            np.sqrt(s, out=s)
            o += s
    out /= n_joints
    return out


def procrustes_align(pred, gt):
    """Similarity transform of pred onto gt (Umeyama 1991, reflection excluded): (...,J,3) -> (...,J,3).

    Minimises sum_j |s R pred_j + t - gt_j|^2 over rotations R (det +1), scales s >= 0 and
    translations t, independently for each pose.
    """
    pred, gt = _check_pair(pred, gt)
    pred, gt = pred.astype(np.float64), gt.astype(np.float64)
    mu_p, mu_g = pred.mean(axis=-2, keepdims=True), gt.mean(axis=-2, keepdims=True)
    x, y = pred - mu_p, gt - mu_g
    # gt_c ~ s R pred_c: with x^T y = U S V^T, R = V D U^T, D = diag(1, 1, det(V U^T)).
    u, sv, vt = np.linalg.svd(np.swapaxes(x, -1, -2) @ y)
    d = np.sign(np.linalg.det(np.swapaxes(vt, -1, -2) @ np.swapaxes(u, -1, -2)))
    d = np.where(d == 0, 1.0, d)
    sv = sv.copy()
    sv[..., -1] *= d
    vt = vt.copy()
    vt[..., -1, :] *= d[..., None]
    rot = np.swapaxes(vt, -1, -2) @ np.swapaxes(u, -1, -2)         # R = V D U^T
    norm2 = np.sum(x * x, axis=(-1, -2))
    scale = sv.sum(axis=-1) / np.maximum(norm2, 1e-300)            # trace(S D) / |x|^2
    return scale[..., None, None] * (x @ np.swapaxes(rot, -1, -2)) + mu_g


def n_mpjpe(pred, gt):
    """N-MPJPE: MPJPE of s * pred with s = <pred, gt> / <pred, pred> over the joints of each pose,
    the scale minimising sum_j |s pred_j - gt_j|^2: (...,J,3), (...,J,3) -> (...,).

    The protocol passes root-relative poses (as MPJPE); a pose of zeros gets s = 0.
    """
    pred, gt = _check_pair(pred, gt)
    pred, gt = pred.astype(np.float64), gt.astype(np.float64)    # as p_mpjpe
    dot = np.sum(pred * gt, axis=(-1, -2))
    norm2 = np.sum(pred * pred, axis=(-1, -2))
    scale = np.where(norm2 > 0, dot / np.where(norm2 > 0, norm2, 1), 0)
    return mpjpe(scale[..., None, None] * pred, gt)


def p_mpjpe(pred, gt):
    """MPJPE after the similarity Procrustes alignment of pred to gt: (...,J,3), (...,J,3) -> (...,)."""
    pred, gt = _check_pair(pred, gt)
    return mpjpe(procrustes_align(pred, gt), gt)


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

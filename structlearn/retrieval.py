"""Metrics over rankings (docs/eval.md, "Multiple hypotheses" and "Retrieval").

best_of_k    the oracle of multi-hypothesis pose papers: per query, the lowest error among its
             k best-ranked hypotheses (here StructNet's k highest-scoring bank poses)
hits_at_k    Hit@k: per query, whether one of its k best-ranked items is within a threshold
cross_view   the view-invariant retrieval benchmark of Mitra et al. ("3D Human Pose Estimation
             under limited supervision using Metric Learning"): each test image queries the test
             images of the other cameras, ranked by <f_I(x), f_I(x')>; a hit is a retrieved image
             whose pose is within a P-MPJPE threshold of the query's pose
image_to_pose the same Hit@k for the training pose bank ranked by the score <f_I(x), f_J(y)>

Rankings are (N, K) errors of each query's items, best-ranked first (inf: no item there).
"""
import numpy as np

from data import h36m
from data.metrics import p_mpjpe

from .inference import to_host, top_k_scores

RETRIEVAL_KS = (1, 10, 20)
# The text of Mitra et al. this project holds (its abstract) states no threshold: 50 mm
# P-MPJPE, said wherever the results are (docs/eval.md).
RETRIEVAL_MM = 50.0


def threshold_rule(threshold):
    """The hit criterion in words, for the tables and the JSON."""
    why = ("the default: the text of the retrieval paper held here states no threshold" if threshold == RETRIEVAL_MM
           else "given")
    return f"P-MPJPE <= {threshold:g} mm ({why})"


def best_of_k(errors, ks):
    """errors (N, K), best-ranked first -> {k: (N,) the minimum over the first k}; k clipped to K."""
    errors = np.asarray(errors)
    if errors.ndim != 2 or errors.shape[1] == 0:
        raise ValueError(f"best_of_k: errors must be (N, K) with K >= 1, got {errors.shape}")
    running = np.minimum.accumulate(errors, axis=1)
    return {int(k): running[:, min(int(k), errors.shape[1]) - 1] for k in ks}


def hits_at_k(errors, ks, threshold):
    """{k: (N,) bool}: one of the first k errors (N, K) is <= threshold."""
    return {k: best <= threshold for k, best in best_of_k(errors, ks).items()}


def _shares(hits, rows=slice(None)):
    """{"1": share, ...}: the share of the queries rows with a hit, per k (JSON keys are strings)."""
    return {str(k): float(np.mean(h[rows])) for k, h in hits.items()}


def ranked_pmpjpe(poses, ranked, query_poses):
    """P-MPJPE (N, K) of poses[ranked] (ranked (N, K) indices, -1: none, inf) aligned to the
    query poses (N, 17, 3)."""
    take = np.maximum(ranked, 0)
    cand = poses[take]
    err = p_mpjpe(cand, np.broadcast_to(query_poses[:, None], cand.shape))
    return np.where(ranked >= 0, err, np.inf)


def camera_order(cameras):
    """The distinct cameras, in Human3.6M's camera order (others after, sorted)."""
    present = set(np.asarray(cameras).tolist())
    return [c for c in h36m.CAMERAS if c in present] + sorted(present - set(h36m.CAMERAS))


def cross_view(f_I, poses, cameras, ks=RETRIEVAL_KS, threshold=RETRIEVAL_MM, batch=256, chunk=16384):
    """Cross-view retrieval: f_I (N, D) image embeddings, poses (N, 17, 3) root-relative mm,
    cameras (N,) str. Per gallery camera, the top max(ks) of every query by <f_I, f_I'> (one
    streaming top-k per query block and camera: N x N scores in all, never held at once).

    -> {"queries", "overall": {"hit_at_k": {"1": share, ...}}, "pairs": [{"query_camera",
    "gallery_camera", "queries", "gallery", "hit_at_k"}]}; overall ranks the union of the other
    cameras' images; "overall" is None with fewer than two cameras.
    """
    f_I, cameras = to_host(f_I), np.asarray(cameras).astype(str)
    K, N, cams = max(ks), len(f_I), camera_order(cameras)
    own = np.array([cams.index(c) for c in cameras], dtype=np.int64)
    galleries = [np.flatnonzero(cameras == cam) for cam in cams]
    embeddings = [f_I[g] for g in galleries]
    scores = np.full((N, len(cams), K), -np.inf, np.float32)
    errors = np.full((N, len(cams), K), np.inf)
    for s in range(0, N, batch):
        sl = slice(s, s + batch)
        ranked = np.full((len(f_I[sl]), len(cams), K), -1, np.int64)
        for c, (gallery, emb) in enumerate(zip(galleries, embeddings)):
            k = min(K, len(gallery))
            sc, ix = top_k_scores(f_I[sl], emb, k, chunk)
            scores[sl, c, :k], ranked[:, c, :k] = to_host(sc), gallery[to_host(ix)]
        rows = np.arange(len(ranked))
        ranked[rows, own[sl]] = -1                  # a query never retrieves from its own camera
        scores[sl][rows, own[sl]] = -np.inf
        errors[sl] = ranked_pmpjpe(poses, ranked.reshape(len(ranked), -1), poses[sl]).reshape(ranked.shape)
    pairs = []
    for q, qcam in enumerate(cams):
        rows = own == q
        for c, gcam in enumerate(cams):
            if c != q:
                pairs.append({"query_camera": qcam, "gallery_camera": gcam, "queries": int(rows.sum()),
                              "gallery": int((cameras == gcam).sum()),
                              "hit_at_k": _shares(hits_at_k(errors[rows, c], ks, threshold))})
    overall = None
    if len(cams) > 1:
        # the union of the other cameras' lists: its top K is the top K of the other cameras' images
        order = np.argsort(-scores.reshape(N, -1), axis=1, kind="stable")[:, :K]
        merged = np.take_along_axis(errors.reshape(N, -1), order, axis=1)
        overall = {"hit_at_k": _shares(hits_at_k(merged, ks, threshold))}
    return {"queries": N, "overall": overall, "pairs": pairs}


def image_to_pose(errors, cameras, bank_size, ks=RETRIEVAL_KS, threshold=RETRIEVAL_MM):
    """Hit@k of the bank poses ranked by the score: errors (N, K) P-MPJPE of each test image's
    K highest-scoring bank poses to its ground truth, cameras (N,) -> {"queries", "bank_poses",
    "overall": {"hit_at_k"}, "per_camera": [{"camera", "queries", "hit_at_k"}]}."""
    cameras = np.asarray(cameras).astype(str)
    hits = hits_at_k(errors, ks, threshold)
    return {"queries": int(len(cameras)), "bank_poses": int(bank_size), "overall": {"hit_at_k": _shares(hits)},
            "per_camera": [{"camera": c, "queries": int((cameras == c).sum()), "hit_at_k": _shares(hits, cameras == c)}
                           for c in camera_order(cameras)]}

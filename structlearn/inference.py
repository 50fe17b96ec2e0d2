"""Inference over a pose bank (Sec. 5.2): embeddings, streaming top-A, Max / Avg(A) / Pred.

The pose embeddings of the bank (all training poses) do not depend on the image, so they are
computed once per model (the paper's point that they can be computed offline) and cached beside
the model file. Top-A runs over the bank in chunks, so memory stays bounded by
batch x (chunk + A), never images x bank.
"""
import numpy as np

from nn import backend


def image_outputs(net, params, images):
    """f_I (N, D) and f_P (N, 51) of preprocessed images (N, 3, S, S), evaluation mode."""
    (f2, f3), _ = net.convs.forward(params, images)
    f_I, f_P, _ = net.image.forward(params, f2, f3, None)
    return f_I, f_P


def pose_embeddings(net, params, poses_n, chunk=8192):
    """f_J of normalised poses (M, 51) -> (M, D), computed in chunks."""
    xp = backend.get_array_module(params[next(iter(params))])
    out = [net.pose.forward(params, xp.asarray(poses_n[s:s + chunk]))[0] for s in range(0, len(poses_n), chunk)]
    return xp.concatenate(out)


def top_k_scores(f_I, bank_emb, k, chunk=16384):
    """The k highest scores <f_I, f_J(y)> over the bank, per image, best first.

    f_I (B, D), bank_emb (M, D) -> (scores (B, k), indices (B, k)). Streams the bank in chunks
    of `chunk` poses, keeping a running top-k (argpartition of the k kept + the chunk's scores).
    """
    xp = backend.get_array_module(f_I)
    M = bank_emb.shape[0]
    k = min(k, M)
    B = f_I.shape[0]
    best_s = xp.full((B, 0), -xp.inf, dtype=f_I.dtype)
    best_i = xp.zeros((B, 0), dtype=xp.int64)
    for s in range(0, M, chunk):
        scores = f_I @ bank_emb[s:s + chunk].T
        idx = xp.broadcast_to(xp.arange(s, s + scores.shape[1]), scores.shape)
        cat_s = xp.concatenate([best_s, scores], axis=1)
        cat_i = xp.concatenate([best_i, idx], axis=1)
        if cat_s.shape[1] > k:
            part = xp.argpartition(-cat_s, k - 1, axis=1)[:, :k]
            cat_s = xp.take_along_axis(cat_s, part, axis=1)
            cat_i = xp.take_along_axis(cat_i, part, axis=1)
        best_s, best_i = cat_s, cat_i
    order = xp.argsort(-best_s, axis=1, kind="stable")
    return xp.take_along_axis(best_s, order, axis=1), xp.take_along_axis(best_i, order, axis=1)


def predict_from_bank(top_idx, bank_mm, A):
    """StructNet-Max (A = 1) or StructNet-Avg(A): the mean of the A best bank poses, (B, 17, 3)."""
    return bank_mm[top_idx[:, :A]].mean(axis=1)


def to_host(x):
    return backend.to_numpy(x)


def align_statistic(pred_mm, gt_mm, threshold=30.0):
    """Share of poses whose MPJPE to the ground truth is within `threshold` mm (Sec. 6: 97%)."""
    err = np.linalg.norm(pred_mm - gt_mm, axis=-1).mean(axis=-1)
    return float((err <= threshold).mean())

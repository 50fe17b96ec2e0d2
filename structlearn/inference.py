"""Inference over a pose bank (Sec. 5.2): embeddings, streaming top-A, Max / Avg(A) / Pred.

The pose embeddings of the bank (all training poses) do not depend on the image, so they are
computed once per model (the paper's point that they can be computed offline) and cached beside
the model file (structlearn.bank). Top-A runs over the bank in chunks, so memory stays
bounded by batch x (chunk + A), never images x bank.
"""
import numpy as np

from nn import backend


def image_outputs(net, params, images):
    """f_I (N, D) (eq. 2) and f_P (N, 51) (eq. 10) of preprocessed images (N, 3, S, S), evaluation mode."""
    f2, f3 = net.convs.features(params, images)
    f_I, f_P, _ = net.image.forward(params, f2, f3, None)
    return f_I, f_P


def regression_outputs(net, params, images):
    """The DconvMP-HML prediction of a MultiTaskNet: tanh(W7^T h3 + b7) (N, 51), normalised pose."""
    f2, f3 = net.convs.features(params, images)
    h3, _ = net.image.trunk(params, f2, f3, None)
    p, _ = net.image.g7.forward(params, h3)
    f_P, _ = net.image.tanh.forward(params, p)
    return f_P


def pose_embeddings(net, params, poses_n, chunk=8192):
    """f_J (eq. 3) of normalised poses (M, 51) -> (M, D), computed in chunks."""
    xp = backend.get_array_module(params[next(iter(params))])
    out = [net.pose.forward(params, xp.asarray(poses_n[s:s + chunk]))[0] for s in range(0, len(poses_n), chunk)]
    return xp.concatenate(out)


def _top_rows(xp, scores, idx, k):
    """Per row, the k largest of scores (B, n) (any order) with their idx (B, n)."""
    if scores.shape[1] <= k:
        return scores.copy(), idx.copy()   # idx may be a read-only broadcast
    part = xp.argpartition(-scores, k - 1, axis=1)[:, :k]
    return xp.take_along_axis(scores, part, axis=1), xp.take_along_axis(idx, part, axis=1)


def top_k_scores(f_I, bank_emb, k, chunk=16384):
    """The k highest scores <f_I, f_J(y)> (eq. 4) over the bank, per image, best first.

    f_I (B, D), bank_emb (M, D) -> (scores (B, k), indices (B, k)), k clipped to M. Streams the
    bank in chunks of `chunk` poses (one GEMM each) keeping a running top-k. After the first
    chunk only scores above a row's current k-th best can enter, and those are few, so a chunk
    costs its GEMM, one max-reduction and a merge of (B, k + hits) values, not a partition of
    (B, k + chunk). Memory: the (B, chunk) score block plus O(B k).
    """
    xp = backend.get_array_module(f_I)
    M = bank_emb.shape[0]
    if M == 0:
        raise ValueError("top_k_scores: empty bank")
    if int(k) < 1:
        raise ValueError(f"top_k_scores: k must be at least 1, got {k}")
    k = min(int(k), M)
    B = f_I.shape[0]
    if k == 1:  # StructNet-Max: a running argmax
        best_s = xp.full((B,), -xp.inf, dtype=f_I.dtype)
        best_i = xp.zeros((B,), dtype=xp.int64)
        for s in range(0, M, chunk):
            scores = f_I @ bank_emb[s:s + chunk].T
            j = xp.argmax(scores, axis=1)
            v = scores[xp.arange(B), j]
            better = v > best_s
            best_s = xp.where(better, v, best_s)
            best_i = xp.where(better, j + s, best_i)
        return best_s[:, None], best_i[:, None]

    # (Smaller first blocks, to raise the threshold sooner, measured slower: more blocks, each with
    # its fixed costs, and less efficient GEMMs.)
    best_s = best_i = None
    for s in range(0, M, chunk):
        scores = f_I @ bank_emb[s:s + chunk].T
        n = scores.shape[1]
        if best_s is None or best_s.shape[1] < k:
            idx = xp.broadcast_to(xp.arange(s, s + n), scores.shape)
            if best_s is not None:
                scores = xp.concatenate([best_s, scores], axis=1)
                idx = xp.concatenate([best_i, idx], axis=1)
            best_s, best_i = _top_rows(xp, scores, idx, k)
            continue
        thr = best_s.min(axis=1)
        hit_rows = xp.flatnonzero(scores.max(axis=1) > thr)
        if hit_rows.size == 0:
            continue
        sub = scores if hit_rows.size == B else scores[hit_rows]
        mask = sub > thr[hit_rows, None]
        # row-major flat positions (2-D nonzero is several times slower than this)
        rows, cols = xp.divmod(xp.flatnonzero(mask), mask.shape[1])
        counts = xp.bincount(rows, minlength=hit_rows.size)
        width = int(counts.max())
        pos = xp.arange(rows.size) - (xp.cumsum(counts) - counts)[rows]
        cand_s = xp.full((hit_rows.size, width), -xp.inf, dtype=scores.dtype)
        cand_i = xp.zeros((hit_rows.size, width), dtype=xp.int64)
        cand_s[rows, pos] = sub[rows, cols]
        cand_i[rows, pos] = cols + s
        merged_s, merged_i = _top_rows(xp, xp.concatenate([best_s[hit_rows], cand_s], axis=1),
                                       xp.concatenate([best_i[hit_rows], cand_i], axis=1), k)
        best_s[hit_rows] = merged_s
        best_i[hit_rows] = merged_i
    order = xp.argsort(-best_s, axis=1, kind="stable")
    return xp.take_along_axis(best_s, order, axis=1), xp.take_along_axis(best_i, order, axis=1)


def merge_top_k(lists, k):
    """The exact top k of a bank from the top lists of its shards (sharded evaluation, docs/mpi.md):
    lists [(scores (B, k_r), bank indices (B, k_r))] on the host, k_r = min(k, shard size) ->
    (scores (B, k), indices (B, k)), best first, equal scores by lower bank index. Every pose of the
    whole bank's top k is in its shard's top k_r, so nothing is lost."""
    s = np.concatenate([a for a, _ in lists], axis=1)
    i = np.concatenate([b for _, b in lists], axis=1)
    order = np.lexsort((i, -s), axis=-1)[:, :k]
    return np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)


def average_prefixes(top_idx, bank_mm, As):
    """StructNet-Avg(A) for several A at once: {A: (B, 17, 3)} from the ranked poses top_idx
    (B, K) of bank_mm (M, 17, 3); A > K is clipped to K. One pass over the max(A) best poses:
    the sums of consecutive segments [A_prev, A) accumulate in float64."""
    B, K = top_idx.shape
    flat = bank_mm.reshape(len(bank_mm), -1)
    clipped = sorted({min(int(a), K) for a in As})
    acc = np.zeros((B, flat.shape[1]), dtype=np.float64)
    sums, prev = {}, 0
    for c in clipped:
        acc += flat[top_idx[:, prev:c]].sum(axis=1, dtype=np.float64)
        sums[c], prev = acc / c, c
    return {int(a): sums[min(int(a), K)].reshape((B,) + bank_mm.shape[1:]).astype(np.float32) for a in As}


def to_host(x):
    """A device array as a NumPy array (a NumPy array unchanged)."""
    return backend.to_numpy(x)


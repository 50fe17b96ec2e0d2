"""Stage 1 of Algorithm 1: candidate sets, the most-violated pose (eq. 7), the working set."""
import numpy as np

from data.metrics import pairwise_mpjpe
from nn import backend

from . import search_kernels


def candidate_margins(y_mm, cand_mm, margin_scale=1.0):
    """Delta(y_i, y_c) = margin_scale * MPJPE (eq. 8) of every example against every candidate:
    y_mm (B, 17, 3) and cand_mm (C, 17, 3) root-relative in mm -> (B, C). On CuPy arrays: the
    pairwise_mpjpe CUDA kernel (structlearn/kernels/search.cu)."""
    if backend.is_gpu_array(y_mm):
        return search_kernels.pairwise_mpjpe(y_mm, cand_mm, margin_scale)
    return margin_scale * pairwise_mpjpe(y_mm, cand_mm)


def most_violated(f_I, cand_emb, margins=None, y_mm=None, cand_mm=None, margin_scale=1.0):
    """argmax over candidates of <f_I(x), f_J(y')> + Delta(y, y') for each example (eq. 7).

    f_I: (B, D) image embeddings; cand_emb: (C, D) candidate pose embeddings; margins: (B, C)
    from candidate_margins, or None to compute them from y_mm (B, 17, 3), cand_mm (C, 17, 3) and
    margin_scale. The term -f_S(x, y) of eq. 7 is constant per example and does not change the
    argmax. Returns (index (B,) into the candidates, the chosen margins (B,), the maximum of
    score + margin (B,)). On CuPy arrays without margins, one cuBLAS GEMM and the fused
    most-violated kernel (structlearn/kernels/search.cu), which never materialises the (B, C)
    margins.
    """
    xp = backend.get_array_module(f_I)
    if margins is None:
        if y_mm is None or cand_mm is None:
            raise ValueError("most_violated: give the margins, or y_mm and cand_mm to compute them")
        if xp is not np:
            if f_I.shape[1] != cand_emb.shape[1]:
                raise ValueError(f"most_violated: f_I {tuple(f_I.shape)} and candidates {tuple(cand_emb.shape)} disagree")
            return search_kernels.most_violated(f_I @ cand_emb.T, y_mm, cand_mm, margin_scale)
        margins = candidate_margins(y_mm, cand_mm, margin_scale).astype(f_I.dtype, copy=False)
    if f_I.shape[1] != cand_emb.shape[1] or margins.shape != (f_I.shape[0], cand_emb.shape[0]):
        raise ValueError(f"most_violated: shapes disagree: f_I {tuple(f_I.shape)}, candidates {tuple(cand_emb.shape)}, "
                         f"margins {tuple(margins.shape)}")
    values = f_I @ cand_emb.T + margins                         # (B, C): one GEMM and an add
    idx = values.argmax(axis=1)
    rows = xp.arange(idx.shape[0])
    return idx, margins[rows, idx], values[rows, idx]


def sample_candidates(rng, n_poses, c, frequent):
    """Y_B = UniformSample(Y, C) + KMostFrequent(V, K): sorted unique pose indices."""
    uniform = rng.choice(n_poses, size=min(c, n_poses), replace=False)
    return np.union1d(uniform, np.asarray(frequent, dtype=np.int64))


class WorkingSet:
    """V of Algorithm 1: how often each pose of the pose space was selected as most violated."""

    def __init__(self, n_poses):
        self.counts = np.zeros(n_poses, dtype=np.int64)

    def add(self, pose_indices):
        np.add.at(self.counts, np.asarray(pose_indices, dtype=np.int64), 1)

    def most_frequent(self, k):
        """The k most frequently violated poses (ties: lower index first); fewer if V is smaller."""
        seen = np.flatnonzero(self.counts)
        order = np.lexsort((seen, -self.counts[seen]))  # by count descending, then index
        return seen[order[:k]]

    def __len__(self):
        return int(np.count_nonzero(self.counts))

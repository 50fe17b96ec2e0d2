"""Launchers of the search kernels (structlearn/kernels/search.cu): the MPJPE margins (eq. 8) and
the fused most-violated search (eq. 7), through nn.kernels' loader.

Each takes CuPy arrays (the GPU path of structlearn/search.py) or NumPy arrays (the CPU emulation
of the same kernel, for tests; see nn.kernels.emulate) and allocates its outputs with the inputs'
array module. Poses are (n, J, 3).
"""
from pathlib import Path

from nn import backend
from nn.kernels import THREADS_PER_BLOCK, grid_for, launch

SEARCH_CU = Path(__file__).resolve().parent / "kernels" / "search.cu"
SEARCH_THREADS = 128
CANDIDATES_PER_SLOT = 8


def _poses(a, dtype, name):
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{name}: expected poses (n, J, 3), got {tuple(a.shape)}")
    return backend.get_array_module(a).ascontiguousarray(a, dtype=dtype)


def pairwise_mpjpe(a, b, scale=1.0):
    """scale * MPJPE of every pose of a (B, J, 3) against every pose of b (C, J, 3) -> (B, C),
    as data.metrics.pairwise_mpjpe (float32 unless an input is float64)."""
    dtype = backend.result_float_dtype(a, b)
    a, b = _poses(a, dtype, "a"), _poses(b, dtype, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"pairwise_mpjpe: joint counts differ: a {tuple(a.shape)}, b {tuple(b.shape)}")
    out = backend.get_array_module(a).empty((a.shape[0], b.shape[0]), dtype=dtype)
    launch(SEARCH_CU, "pairwise_mpjpe", dtype, (grid_for(out.size),), (THREADS_PER_BLOCK,),
           a, b, out, a.shape[0], b.shape[0], a.shape[1], scale)
    return out


def most_violated(scores, y, cand, scale):
    """Per row b: argmax_c scores[b, c] + scale * MPJPE(y_b, cand_c) (eq. 7), the margins never
    materialised. scores (B, C), y (B, J, 3), cand (C, J, 3) -> (index (B,) int64, margin (B,),
    value (B,)); ties go to the lower index, as numpy.argmax."""
    dtype = scores.dtype
    B, C = scores.shape
    y, cand = _poses(y, dtype, "y"), _poses(cand, dtype, "cand")
    if y.shape[0] != B or cand.shape[0] != C or y.shape[1] != cand.shape[1]:
        raise ValueError(f"most_violated: shapes disagree: scores {tuple(scores.shape)}, y {tuple(y.shape)}, "
                         f"cand {tuple(cand.shape)}")
    xp = backend.get_array_module(scores)
    blocks_x = max(1, -(-C // (SEARCH_THREADS * CANDIDATES_PER_SLOT)))
    P = blocks_x * SEARCH_THREADS
    part_v = xp.empty((B, P), dtype=dtype)
    part_i = xp.empty((B, P), dtype=xp.int64)
    part_m = xp.empty((B, P), dtype=dtype)
    launch(SEARCH_CU, "most_violated_partial", dtype, (blocks_x, min(B, 65535)), (SEARCH_THREADS,),
           xp.ascontiguousarray(scores), y, cand, B, C, y.shape[1], scale, part_v, part_i, part_m)
    index = xp.empty(B, dtype=xp.int64)
    margin, value = xp.empty(B, dtype=dtype), xp.empty(B, dtype=dtype)
    launch(SEARCH_CU, "most_violated_reduce", dtype, (grid_for(B, SEARCH_THREADS),), (SEARCH_THREADS,),
           part_v, part_i, part_m, B, P, index, margin, value)
    return index, margin, value

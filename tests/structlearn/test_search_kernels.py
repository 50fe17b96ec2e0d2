"""The search kernels of structlearn/kernels/search.cu against their NumPy references, run on the
CPU through nn.kernels.emulate (the same source, compiled by the host C++ compiler): index
arithmetic and tie-breaking of the margins and the fused most-violated search, and the launchers
in structlearn/search_kernels.py; tests/gpu/ runs them on a device."""
import shutil

import numpy as np
import pytest
from hypothesis import given, strategies as st

from data.metrics import pairwise_mpjpe
from nn import kernels
from nn.kernels import emulate
from structlearn import search_kernels
from tests.nn.helpers import compile_with_nvcc

pytestmark = pytest.mark.skipif(emulate.compiler() is None, reason="kernel emulation needs a C++ compiler")
DTYPES = [np.float32, np.float64]


@given(b=st.integers(1, 6), c=st.integers(1, 1100), j=st.integers(1, 17), seed=st.integers(0, 2**16),
       dtype=st.sampled_from(DTYPES))
def test_pairwise_mpjpe_kernel_matches_numpy(b, c, j, seed, dtype):
    rng = np.random.default_rng(seed)
    a, cand = rng.normal(0, 300, (b, j, 3)).astype(dtype), rng.normal(0, 300, (c, j, 3)).astype(dtype)
    np.testing.assert_allclose(search_kernels.pairwise_mpjpe(a, cand, 0.1), 0.1 * pairwise_mpjpe(a, cand),
                               rtol=1e-5 if dtype == np.float32 else 1e-12)


@given(b=st.integers(1, 5), c=st.integers(1, 2500), seed=st.integers(0, 2**16), dtype=st.sampled_from(DTYPES),
       tie=st.booleans())
def test_fused_most_violated_matches_argmax_of_score_plus_margin(b, c, seed, dtype, tie):
    rng = np.random.default_rng(seed)
    y = rng.normal(0, 200, (b, 17, 3)).astype(dtype)
    cand = rng.normal(0, 200, (c, 17, 3)).astype(dtype)
    if tie and c > 3:  # duplicate candidates give exactly equal values: the lower index must win
        cand[c - 1] = cand[c // 2]
        cand[1] = cand[c // 2]
    scale = 0.01
    margins = search_kernels.pairwise_mpjpe(y, cand, scale)  # the same float arithmetic as the fused kernel
    scores = rng.standard_normal((b, c)).astype(dtype)
    if tie and c > 3:
        scores[:, [1, c // 2, c - 1]] = scores[:, [c // 2]] + 100  # the tied triple is the maximum
    idx, margin, value = search_kernels.most_violated(scores, y, cand, scale)
    values = scores + margins
    np.testing.assert_array_equal(idx, values.argmax(axis=1))
    rows = np.arange(b)
    np.testing.assert_array_equal(margin, margins[rows, idx])
    np.testing.assert_array_equal(value, values[rows, idx])


def test_the_search_kernel_file_declares_kernels():
    assert sorted(kernels.signatures(search_kernels.SEARCH_CU)) == [
        "most_violated_partial", "most_violated_reduce", "pairwise_mpjpe"]


NVCC = shutil.which("nvcc")


@pytest.mark.skipif(NVCC is None, reason="nvcc not installed")
def test_search_kernels_compile_with_nvcc(tmp_path):
    """The CUDA compiler accepts every instantiation (no GPU needed to compile)."""
    done = compile_with_nvcc(NVCC, search_kernels.SEARCH_CU, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr.lower(), done.stderr

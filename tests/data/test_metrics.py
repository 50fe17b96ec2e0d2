import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial import procrustes
from scipy.spatial.transform import Rotation

from data.metrics import mpjpe, n_mpjpe, p_mpjpe, pairwise_mpjpe, procrustes_align

coords = st.floats(-1000, 1000, allow_nan=False, width=64)


def poses(n_joints=17):
    return arrays(np.float64, (n_joints, 3), elements=coords)


def spread_out(p):
    """Only poses whose joints are not (nearly) collinear: alignment is unique for those."""
    c = p - p.mean(axis=0)
    return np.linalg.svd(c, compute_uv=False)[1] > 1.0


# ---------------------------------------------------------------- hand-computed cases
def test_mpjpe_hand_computed():
    gt = np.zeros((2, 3))
    pred = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]])      # errors 5 and 1
    assert mpjpe(pred, gt) == pytest.approx(3.0)
    batch = np.stack([pred, 2 * pred])                         # (2, 2, 3) -> (2,)
    np.testing.assert_allclose(mpjpe(batch, np.zeros_like(batch)), [3.0, 6.0])
    assert mpjpe(gt, gt) == 0.0


def test_p_mpjpe_hand_computed():
    gt = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    R = Rotation.from_euler("xyz", [10, -40, 70], degrees=True).as_matrix()
    pred = 3.0 * gt @ R.T + [5.0, -2.0, 7.0]
    assert mpjpe(pred, gt) > 1
    assert p_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(procrustes_align(pred, gt), gt, atol=1e-12)
    # A mirror image cannot be aligned by a rotation (reflection is excluded)...
    mirrored = gt * [-1, 1, 1]
    assert p_mpjpe(mirrored, gt) > 0.1
    # ...and the best proper rotation of this tetrahedron's mirror image is known in closed form:
    # the alignment maps centroids together and never does better than the reflection-allowed fit.
    assert p_mpjpe(mirrored, gt) >= scipy_aligned_error(mirrored, gt) - 1e-12


def test_n_mpjpe_hand_computed():
    # two joints: gt = (2,0,0), (0,2,0); pred = (1,0,0), (0,0,1): s = <p,g>/<p,p> = 2/2 = 1, errors 1 and sqrt(5)
    gt = np.array([[2.0, 0, 0], [0, 2, 0]])
    pred = np.array([[1.0, 0, 0], [0, 0, 1]])
    assert n_mpjpe(pred, gt) == pytest.approx((1 + np.sqrt(5)) / 2)
    # a scaled copy is aligned exactly; a pose of zeros keeps s = 0 (error = |gt|)
    assert n_mpjpe(0.25 * gt, gt) == pytest.approx(0.0, abs=1e-12)
    assert n_mpjpe(np.zeros_like(gt), gt) == pytest.approx(2.0)
    batch = np.stack([pred, 3 * gt])                          # (2, 2, 3) -> (2,)
    np.testing.assert_allclose(n_mpjpe(batch, np.stack([gt, gt])), [(1 + np.sqrt(5)) / 2, 0.0], atol=1e-12)
    # scale only: a rotated copy is not aligned (P-MPJPE aligns it)
    R = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    assert n_mpjpe(gt @ R.T, gt) > 1 and p_mpjpe(gt @ R.T, gt) == pytest.approx(0.0, abs=1e-9)


def test_n_mpjpe_equals_a_brute_force_scale_search():
    """The scale of N-MPJPE is the grid point of least squared error, found by brute force."""
    rng = np.random.default_rng(2)
    grid = np.linspace(0, 5, 50001)                           # step 1e-4
    for _ in range(20):
        gt = rng.normal(0, 300, (17, 3))
        pred = rng.uniform(0.3, 3) * (gt + rng.normal(0, 60, gt.shape))
        sse = ((grid[:, None, None] * pred - gt) ** 2).sum(axis=(1, 2))
        best = grid[int(np.argmin(sse))]
        assert best == pytest.approx(np.sum(pred * gt) / np.sum(pred * pred), abs=1e-4)
        assert n_mpjpe(pred, gt) == pytest.approx(mpjpe(best * pred, gt), rel=1e-3)


def test_n_mpjpe_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        n_mpjpe(np.zeros((17, 3)), np.zeros((16, 3)))
    with pytest.raises(ValueError, match="pred"):
        n_mpjpe(np.zeros((17, 2)), np.zeros((17, 2)))


def scipy_aligned_error(pred, gt):
    """MPJPE after scipy's Procrustes (which allows reflections), in gt's units.

    scipy standardises both sets (centred, unit Frobenius norm) and moves the second onto the
    first; undoing gt's standardisation gives the aligned pred in gt's frame.
    """
    gt_c = gt - gt.mean(axis=0)
    _, aligned, _ = procrustes(gt, pred)
    aligned = aligned * np.linalg.norm(gt_c) + gt.mean(axis=0)
    return mpjpe(aligned, gt)


def test_p_mpjpe_matches_scipy_procrustes_when_no_reflection_is_involved():
    rng = np.random.default_rng(0)
    for _ in range(50):
        gt = rng.normal(0, 300, (17, 3))
        R = Rotation.random(random_state=rng).as_matrix()
        pred = 0.7 * (gt + rng.normal(0, 40, gt.shape)) @ R.T + rng.normal(0, 500, 3)
        gt_c = gt - gt.mean(axis=0)
        _, aligned, _ = procrustes(gt, pred)
        np.testing.assert_allclose(procrustes_align(pred, gt), aligned * np.linalg.norm(gt_c) + gt.mean(axis=0),
                                   atol=1e-8)
        assert p_mpjpe(pred, gt) == pytest.approx(scipy_aligned_error(pred, gt), rel=1e-10)


def test_procrustes_alignment_is_optimal_even_for_mirror_images():
    """No small rotation, scale or shift of the aligned pose lowers its squared error."""
    rng = np.random.default_rng(1)
    for mirror in (False, True):
        gt = rng.normal(0, 300, (17, 3))
        pred = gt * ([-1, 1, 1] if mirror else 1) + rng.normal(0, 30, gt.shape)   # best rotation: det -1
        aligned = procrustes_align(pred, gt)
        sse = np.sum((aligned - gt) ** 2)
        centre = aligned.mean(axis=0)
        for _ in range(200):
            R = Rotation.from_rotvec(rng.normal(0, 0.02, 3)).as_matrix()
            moved = (1 + rng.normal(0, 0.02)) * (aligned - centre) @ R.T + centre + rng.normal(0, 2, 3)
            assert np.sum((moved - gt) ** 2) >= sse * (1 - 1e-12)
        assert np.linalg.det(np.linalg.lstsq(pred - pred.mean(0), aligned - centre, rcond=None)[0]) > 0


# ---------------------------------------------------------------- properties
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), noise=st.floats(0, 300),
       angles=arrays(np.float64, 3, elements=st.floats(-np.pi, np.pi)),
       scale=st.floats(0.1, 10), shift=arrays(np.float64, 3, elements=coords))
def test_p_mpjpe_invariant_to_similarity_of_pred(seed, noise, angles, scale, shift):
    rng = np.random.default_rng(seed)
    gt = rng.normal(0, 300, (17, 3))
    pred = gt + rng.normal(0, noise, (17, 3))
    assume(spread_out(pred) and spread_out(gt))
    R = Rotation.from_rotvec(angles).as_matrix()
    moved = scale * pred @ R.T + shift
    assert p_mpjpe(moved, gt) == pytest.approx(p_mpjpe(pred, gt), rel=1e-6, abs=1e-6)
    # Procrustes minimises the squared error (not MPJPE): the identity is one of its candidates.
    aligned = procrustes_align(pred, gt)
    assert np.sum((aligned - gt) ** 2) <= np.sum((pred - gt) ** 2) * (1 + 1e-9) + 1e-9


@settings(max_examples=60, deadline=None)
@given(a=poses(), b=poses())
def test_mpjpe_symmetric_and_nonnegative(a, b):
    assert mpjpe(a, b) == mpjpe(b, a) >= 0
    assert mpjpe(a, a) == 0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_a=st.integers(1, 9), n_b=st.integers(1, 40),
       chunk=st.integers(1, 50), f32=st.booleans())
def test_pairwise_equals_the_loop(seed, n_a, n_b, chunk, f32):
    rng = np.random.default_rng(seed)
    dtype = np.float32 if f32 else np.float64
    a = rng.normal(0, 300, (n_a, 17, 3)).astype(dtype)
    b = rng.normal(0, 300, (n_b, 17, 3)).astype(dtype)
    b[0] = a[0]                                            # the ground truth among the candidates
    out = pairwise_mpjpe(a, b, chunk=chunk)
    assert out.shape == (n_a, n_b) and out.dtype == dtype
    loop = np.array([[mpjpe(x.astype(np.float64), y.astype(np.float64)) for y in b] for x in a])
    np.testing.assert_allclose(out, loop, rtol=1e-5 if f32 else 1e-12)
    assert out[0, 0] == 0.0                                # exactly, even in float32


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("call, match", [
    (lambda: mpjpe(np.zeros((17, 3)), np.zeros((16, 3))), "same shape"),
    (lambda: mpjpe(np.zeros((17, 2)), np.zeros((17, 2))), "pred"),
    (lambda: p_mpjpe(np.zeros((17, 3)), np.zeros(3)), "gt"),
    (lambda: pairwise_mpjpe(np.zeros((4, 17)), np.zeros((5, 17, 3))), "a:"),
    (lambda: pairwise_mpjpe(np.zeros((4, 17, 3)), np.zeros((5, 16, 3))), "b:"),
    (lambda: pairwise_mpjpe(np.zeros((4, 17, 3)), np.zeros((5, 17, 3)), chunk=0), "chunk"),
])
def test_shape_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()

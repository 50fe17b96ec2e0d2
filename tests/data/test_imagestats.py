import json

import numpy as np
import pytest

from data.dataset import PoseDataset
from data.imagestats import ImageStats


# ---------------------------------------------------------------- image statistics
def test_image_stats_match_direct_computation(tiny_path):
    with PoseDataset(tiny_path) as ds:
        idx = ds.select(subjects="S1")
        pixels = ds.read_images(idx).reshape(-1, 3).astype(np.float64)
        stats = ImageStats.compute(ds, idx, chunk=5)
        np.testing.assert_allclose(stats.mean, pixels.mean(axis=0), rtol=1e-10)
        np.testing.assert_allclose(stats.cov, np.cov(pixels.T, bias=True), rtol=1e-8, atol=1e-8)
        # The moments stored by the writer give the same statistics without a pass.
        stored = ImageStats.for_subjects(ds, ["S1"])
        np.testing.assert_allclose(stored.cov, stats.cov, rtol=1e-8)
        np.testing.assert_allclose(stored.mean, stats.mean, rtol=1e-10)
    v = stats.eigvec
    np.testing.assert_allclose(v @ np.diag(stats.eigval) @ v.T, stats.cov, atol=1e-6)
    assert np.all(np.diff(stats.eigval) <= 0)
    assert stats.scale == pytest.approx(np.sqrt(np.trace(stats.cov) / 3))
    again = ImageStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    np.testing.assert_allclose(again.eigval, stats.eigval)


def test_color_noise_follows_covariance():
    cov = np.array([[400.0, 300, 100], [300, 500, 50], [100, 50, 200]])
    stats = ImageStats([100, 110, 120], cov)
    alpha = np.random.default_rng(0).normal(0, 0.1, (200000, 3))
    shifts = stats.color_noise(alpha)
    # alpha_i ~ N(0, s^2) along sqrt(lambda_i) p_i: the shifts' covariance is s^2 cov.
    np.testing.assert_allclose(np.cov(shifts.T), 0.01 * cov, rtol=0.03, atol=0.05)

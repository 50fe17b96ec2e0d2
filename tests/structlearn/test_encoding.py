"""The pose encoding (structlearn.encoding.PoseNormalizer): invertible, inside the tanh range."""
import json

import numpy as np
import pytest

from data.dataset import root_relative
from structlearn.encoding import PoseNormalizer


@pytest.mark.parametrize("mode", ["coordinate", "scalar"])
def test_normalizer_invertible_and_in_range(mode):
    rng = np.random.default_rng(1)
    train = root_relative(rng.normal(0, 400, (200, 17, 3)))
    norm = PoseNormalizer.fit(train, margin=0.9, mode=mode)
    z = norm.normalize(train)
    assert z.shape == (200, 51) and z.dtype == np.float32
    assert np.abs(z).max() <= 0.9 + 1e-5
    assert np.abs(z).max() >= 0.89                    # the margin is reached, not just respected
    np.testing.assert_allclose(norm.denormalize(z), train, atol=1e-2)
    again = PoseNormalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    np.testing.assert_allclose(again.normalize(train[:3]), z[:3])
    if mode == "scalar":
        assert np.ptp(norm.scale) == 0


def test_normalizer_handles_constant_root():
    train = root_relative(np.random.default_rng(2).normal(0, 300, (50, 17, 3)))
    norm = PoseNormalizer.fit(train)
    assert np.all(np.isfinite(norm.normalize(train)))
    assert np.all(norm.normalize(train)[:, :3] == 0)

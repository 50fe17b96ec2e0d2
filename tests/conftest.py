import os

import numpy as np
import pytest
from hypothesis import settings

if os.environ.get("NN_FAKE_CUPY") == "1":
    # `NN_FAKE_CUPY=1 pytest -m gpu` runs the GPU tests against tests/fake_cupy.py (NumPy posing as
    # CuPy): a check of the host/device discipline and the kernels' emulation, not of a GPU.
    from tests.fake_cupy import install
    install()

# Bounded example counts keep the fast suite fast; no retries of flaky tests (none should exist).
settings.register_profile("default", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("default")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)

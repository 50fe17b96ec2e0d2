import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import settings

if os.environ.get("NN_FAKE_CUPY") == "1":
    # `NN_FAKE_CUPY=1 pytest -m gpu` runs the GPU tests against tests/fake_cupy.py (NumPy posing as
    # CuPy): a check of the host/device discipline and the kernels' emulation, not of a GPU.
    from tests.fake_cupy import install
    install()

# Deterministic convolution algorithms: the fixed rule, never a timing (nn.conv_tune); the tests of
# the tuner switch it on with their own cache directory. Subprocesses inherit both.
os.environ["STRUCTNET_CONV_TUNE"] = "0"
os.environ["STRUCTNET_CACHE_DIR"] = tempfile.mkdtemp(prefix="structnet-test-cache-")
atexit.register(shutil.rmtree, os.environ["STRUCTNET_CACHE_DIR"], True)

# Bounded example counts keep the fast suite fast; no retries of flaky tests (none should exist).
settings.register_profile("default", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("default")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _conv_policy_reset():
    """Each test starts from the default policy (a Trainer sets it process-wide)."""
    from nn import conv_tune
    yield
    conv_tune.set_policy("fixed")

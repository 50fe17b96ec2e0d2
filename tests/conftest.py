import numpy as np
import pytest
from hypothesis import settings

# Bounded example counts keep the fast suite fast; no retries of flaky tests (none should exist).
settings.register_profile("default", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("default")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)

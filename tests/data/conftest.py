import numpy as np
import pytest

from data.dataset import DatasetWriter


def write_tiny_dataset(path, n_per=6, subjects=("S1", "S9"), actions=("Walking", "Eating"), seed=0,
                       image_size=128, bank_extra=None, skip=()):
    """A small dataset file with random images and plausible poses (root ~4.5 m in front).

    Rows: for each subject, action (but the (subject, action) pairs in skip), camera 54138969 and
    55011271, n_per frames 0, 5, 10, ...
    bank_extra: None for no bank/ group; k >= 0 for a 10 Hz bank holding every row's pose plus k
    pose-only frames after them in each sequence and camera. Returns path.
    """
    rng = np.random.default_rng(seed)
    with DatasetWriter(path, source="synthetic", generator={"seed": seed}, image_size=image_size,
                       bank_rate_hz=None if bank_extra is None else 10.0) as w:
        for s in subjects:
            w.set_tpose(s, rng.normal(0, 300, (17, 3)))
            for a in actions:
                if (s, a) in skip:
                    continue
                for cam in ("54138969", "55011271"):
                    poses = rng.normal(0, 300, (n_per, 17, 3)) + [0, 0, 4500]
                    images = rng.integers(0, 256, (n_per, image_size, image_size, 3), dtype=np.uint8)
                    w.append(images, poses, s, a, 1, cam, np.arange(n_per) * 5)
                    if bank_extra is not None:
                        extra = rng.normal(0, 300, (bank_extra, 17, 3)) + [0, 0, 4500]
                        w.append_bank(np.concatenate([poses, extra]), s, a, 1, cam,
                                      np.arange(n_per + bank_extra) * 5)
    return str(path)


@pytest.fixture
def tiny_path(tmp_path):
    return write_tiny_dataset(tmp_path / "tiny.h5")


@pytest.fixture
def bank_path(tmp_path):
    return write_tiny_dataset(tmp_path / "bank.h5", bank_extra=3)

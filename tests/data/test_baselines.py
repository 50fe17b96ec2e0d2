import numpy as np

from data import baselines
from data.dataset import DatasetWriter, PoseDataset, root_relative
from data.metrics import pairwise_mpjpe
from tests.data.conftest import write_tiny_dataset


def test_bank_floor_is_the_nearest_training_bank_pose(tmp_path):
    path = write_tiny_dataset(tmp_path / "bank.h5", bank_extra=3)
    errors, meta = baselines.run(path, train=("S1",), test=("S9",), size=16)
    with PoseDataset(path) as ds:
        bank = root_relative(ds.bank_poses(ds.bank_select(subjects=("S1",))))
        test = root_relative(ds.poses(ds.select(subjects=("S9",))))
    assert len(errors["bank floor"]) == len(meta["action"]) == len(test)
    np.testing.assert_allclose(errors["bank floor"], pairwise_mpjpe(test, bank).min(axis=1), rtol=1e-5)
    assert errors["bank floor"].mean() < errors["mean pose"].mean()


def test_bank_density_counts_neighbours_and_other_sequences(tmp_path):
    # S1 Walking: image poses P; its bank adds a pose-only copy of P[0] moved ~5 mm (same sequence).
    # S1 Eating: image poses Q; its bank adds a copy of P[1] moved ~5 mm (another sequence).
    rng = np.random.default_rng(3)
    P, Q = (rng.normal(0, 300, (4, 17, 3)) + [0, 0, 4500] for _ in range(2))
    near = lambda p: p + np.r_[[[0, 0, 0]], rng.normal(0, 3, (16, 3))]  # noqa: E731  (root kept)
    path = str(tmp_path / "density.h5")
    with DatasetWriter(path, source="synthetic", generator={"seed": 0}, image_size=32, bank_rate_hz=10.0) as w:
        w.set_tpose("S1", rng.normal(0, 300, (17, 3)))
        for action, poses, extra in (("Walking", P, near(P[0])), ("Eating", Q, near(P[1]))):
            images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
            w.append(images, poses, "S1", action, 1, "54138969", np.arange(4) * 5)
            w.append_bank(np.concatenate([poses, extra[None]]), "S1", action, 1, "54138969", np.arange(5) * 5)
    share, other, n = baselines.bank_density(path, train=("S1",), n=100)
    assert n == 8                    # every training image drawn, none of the pose-only entries
    assert share == 2 / 8            # P[0] (its own sequence) and P[1] (Eating's entry)
    assert other == 1 / 8            # only P[1]'s neighbour lies in another sequence


def test_main_prints_the_floor_and_the_density(tmp_path, capsys):
    path = write_tiny_dataset(tmp_path / "bank.h5", bank_extra=2)
    assert baselines.main(["--data", path, "--train", "S1", "--test", "S9", "--density-n", "5"]) == 0
    out = capsys.readouterr().out
    assert "bank floor" in out and "bank density:" in out and "of 5 training images" in out

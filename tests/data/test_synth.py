import os

import numpy as np
import pytest

from data import h36m, synth
from data import skeleton as sk
from data.dataset import PoseDataset, root_relative
from data.synth import generator
from data.synth.__main__ import main
from data.synth.preview import preview
from data.synth.subjects import SubjectProfile

SUBJECTS = ("S1", "S9")
ACTIONS = ("Sitting", "Walking")          # in data.h36m.ACTIONS order
TINY = 1.0 / synth.FRAMES_PER_SEQUENCE          # one frame per sequence and camera


# ---------------------------------------------------------------- generation
@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    path = synth.generate(str(d / "a.h5"), scale=TINY, seed=3, workers=1, subjects=SUBJECTS, actions=ACTIONS,
                          progress=False)
    return d, path


def test_generated_file_is_valid_and_complete(tiny_synth):
    _, path = tiny_synth
    with PoseDataset(path) as ds:
        assert ds.n == 2 * 2 * 2 * 4
        assert ds.source == "synthetic" and ds.generator["seed"] == 3 and ds.generator["scale"] == TINY
        assert ds.subjects == SUBJECTS and ds.actions == ACTIONS
        images = ds.read_images(np.arange(ds.n))
        assert images.std() > 20                                   # not blank
        poses, meta = ds.poses(), ds.metadata()
        # Poses are in camera coordinates in front of the camera, 3-8 m away.
        assert (poses[:, :, 2] > 2000).all() and (poses[:, 0, 2] < 8000).all()
        # Each subject's poses have the subject's own bone lengths.
        for s in SUBJECTS:
            sel = meta["subject"] == s
            bl = sk.bone_lengths(poses[sel])
            np.testing.assert_allclose(bl, np.broadcast_to(SubjectProfile(s, 3).skeleton.bone_lengths, bl.shape),
                                       rtol=1e-4, atol=1e-3)
            np.testing.assert_allclose(ds.tpose(s), SubjectProfile(s, 3).tpose(), atol=1e-3)
        # The same frame seen by the four cameras is the same 3D pose.
        rows = np.flatnonzero((meta["subject"] == "S1") & (meta["action"] == "Walking") & (meta["subaction"] == 1))
        assert sorted(meta["camera"][rows]) == sorted(h36m.CAMERA_IDS) and len(set(meta["frame"][rows])) == 1
        world = [np.linalg.inv(h36m.extrinsics("S1", c)[0]) @ p.T for p, c in zip(poses[rows], meta["camera"][rows])]
        rel = [w.T - w.T[0] for w in world]
        np.testing.assert_allclose(rel[1], rel[0], atol=0.1)


def test_generation_is_deterministic_and_independent_of_workers(tiny_synth):
    d, path = tiny_synth
    other = synth.generate(str(d / "b.h5"), scale=TINY, seed=3, workers=2, subjects=SUBJECTS, actions=ACTIONS,
                           progress=False)
    with PoseDataset(path) as a, PoseDataset(other) as b:
        np.testing.assert_array_equal(a.read_images(np.arange(a.n)), b.read_images(np.arange(b.n)))
        np.testing.assert_array_equal(a.poses(), b.poses())
        np.testing.assert_array_equal(a.boxes(), b.boxes())
        for key in ("subject", "action", "camera", "frame"):
            np.testing.assert_array_equal(a.metadata()[key], b.metadata()[key])


def test_different_seed_gives_different_data(tiny_synth):
    d, path = tiny_synth
    other = synth.generate(str(d / "c.h5"), scale=TINY, seed=4, workers=1, subjects=("S1",), actions=("Walking",),
                           progress=False)
    with PoseDataset(path) as a, PoseDataset(other) as b:
        assert not np.allclose(root_relative(a.poses(np.arange(b.n))), root_relative(b.poses()))


def test_ensure_synthetic_reuses_a_matching_file_and_rejects_a_stale_one(tmp_path, monkeypatch):
    calls = []

    def fake_generate(path, scale, seed, workers, progress):
        calls.append((path, scale, seed))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("placeholder")
        return path

    monkeypatch.setattr(generator, "generate", fake_generate)
    monkeypatch.chdir(tmp_path)
    path = synth.ensure_synthetic(scale=0.5, seed=2)
    assert path == os.path.join("cache", "synth_h36m_v1_scale0.5_seed2.h5")
    assert calls == [(path, 0.5, 2)]
    # The placeholder is not a valid dataset: it is regenerated.
    synth.ensure_synthetic(scale=0.5, seed=2)
    assert len(calls) == 2


def test_ensure_synthetic_keeps_a_matching_file(tiny_synth, monkeypatch):
    _, path = tiny_synth
    monkeypatch.setattr(generator, "generate", lambda *a, **k: pytest.fail("regenerated a matching file"))
    # The tiny file holds two subjects and actions only: it does not match the full settings...
    assert "subjects" in generator._matches(path, TINY, 3)
    # ...and the reason names the mismatching setting for scale and seed too.
    assert "seed" in generator._matches(path, TINY, 4) or "subjects" in generator._matches(path, TINY, 4)
    monkeypatch.setattr(generator, "_matches", lambda *a: None)
    assert synth.ensure_synthetic(path, scale=TINY, seed=3) == path


def test_preview_from_file(tiny_synth, tmp_path):
    _, path = tiny_synth
    png = tmp_path / "p.png"
    preview(str(png), data=path, n_rows=2, n_cols=3)
    assert png.stat().st_size > 10000


def test_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--scale", "0"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        main(["--data", "x.h5"])

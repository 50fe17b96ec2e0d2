import os

import numpy as np
import pytest

from data import h36m, synth
from data import skeleton as sk
from data.dataset import PoseDataset, root_relative
from data.synth import generator, render
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
            np.testing.assert_array_equal(a.bank_metadata()[key], b.bank_metadata()[key])
        np.testing.assert_array_equal(a.bank_poses(), b.bank_poses())
        np.testing.assert_array_equal(a.bank_image_rows(), b.bank_image_rows())


def test_different_seed_gives_different_data(tiny_synth):
    d, path = tiny_synth
    other = synth.generate(str(d / "c.h5"), scale=TINY, seed=4, workers=1, subjects=("S1",), actions=("Walking",),
                           progress=False)
    with PoseDataset(path) as a, PoseDataset(other) as b:
        assert not np.allclose(root_relative(a.poses(np.arange(b.n))), root_relative(b.poses()))


def test_ensure_synthetic_reuses_a_matching_file_and_rejects_a_stale_one(tmp_path, monkeypatch):
    calls = []

    def fake_generate(path, scale, seed, workers, progress, rooms, bank_rate_hz, clip_frames):
        calls.append((path, scale, seed, rooms))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("placeholder")
        return path

    monkeypatch.setattr(generator, "generate", fake_generate)
    monkeypatch.chdir(tmp_path)
    path = synth.ensure_synthetic(scale=0.5, seed=2)
    assert path == os.path.join("cache", "synth_h36m_v3_scale0.5_seed2_lab.h5")
    assert calls == [(path, 0.5, 2, "lab")]
    # The placeholder is not a valid dataset: it is regenerated.
    synth.ensure_synthetic(scale=0.5, seed=2)
    assert len(calls) == 2
    # The harder variant has a file of its own.
    other = synth.ensure_synthetic(scale=0.5, seed=2, rooms="random")
    assert other == os.path.join("cache", "synth_h36m_v3_scale0.5_seed2_random.h5") and calls[-1][3] == "random"
    assert synth.default_path(1, 0, "lab", 25) == os.path.join("cache", "synth_h36m_v3_scale1_seed0_lab_bank25hz.h5")
    assert synth.default_path(1, 0, "lab", clip_frames=4) == os.path.join("cache", "synth_h36m_v3_scale1_seed0_lab_clip4.h5")
    with pytest.raises(ValueError, match="rooms must be one of lab, random"):
        synth.ensure_synthetic(scale=0.5, seed=2, rooms="studio")


def test_ensure_synthetic_keeps_a_matching_file(tiny_synth, monkeypatch):
    _, path = tiny_synth
    monkeypatch.setattr(generator, "generate", lambda *a, **k: pytest.fail("regenerated a matching file"))
    # The tiny file holds two subjects and actions only: it does not match the full settings...
    assert "subjects" in generator._matches(path, TINY, 3)
    # ...and the reason names the mismatching setting for scale and seed too.
    assert "seed" in generator._matches(path, TINY, 4) or "subjects" in generator._matches(path, TINY, 4)
    # A file of the other room setting or bank rate is not reused either.
    monkeypatch.setattr(generator.h36m, "ALL_SUBJECTS", SUBJECTS)
    monkeypatch.setattr(generator.h36m, "ACTIONS", ACTIONS)
    assert generator._matches(path, TINY, 3) is None
    assert "rooms is 'lab', not 'random'" in generator._matches(path, TINY, 3, rooms="random")
    assert "bank_rate_hz is 10.0, not 25.0" in generator._matches(path, TINY, 3, bank_rate_hz=25)
    monkeypatch.setattr(generator, "_matches", lambda *a: None)
    assert synth.ensure_synthetic(path, scale=TINY, seed=3) == path


def test_preview_from_file(tiny_synth, tmp_path):
    _, path = tiny_synth
    png = tmp_path / "p.png"
    preview(str(png), data=path, n_rows=2, n_cols=3)
    assert png.stat().st_size > 10000


@pytest.mark.parametrize("argv", [["--scale", "0"], ["--data", "x.h5"], ["--rooms", "studio"],
                                  ["--bank-rate", "7"], ["--bank-rate", "0"], ["--clip-frames", "0"]])
def test_cli_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2


def test_cli_write_failures_name_the_file(tmp_path, capsys):
    # an --out or a --preview under a regular file: one line, exit 1
    from tests.data.conftest import write_tiny_dataset
    data = write_tiny_dataset(tmp_path / "d.h5", n_per=1, image_size=16)
    (tmp_path / "file").write_text("")
    for argv, message in ((["--out", str(tmp_path / "file" / "x.h5"), "--scale", "0.1", "--workers", "1"],
                           f"{tmp_path / 'file' / 'x.h5'}: cannot write the dataset file (not a directory: "
                           f"{tmp_path / 'file'})"),
                          (["--preview", str(tmp_path / "file" / "p.png"), "--data", data],
                           f"{tmp_path / 'file' / 'p.png'}: cannot write (not a directory: {tmp_path / 'file'})")):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {message}"), err


# ---------------------------------------------------------------- the pose bank
def test_bank_holds_the_motion_at_its_rate_from_every_camera(tiny_synth):
    _, path = tiny_synth
    with PoseDataset(path) as ds:
        assert ds.has_bank and ds.bank_rate_hz == 10.0 and ds.generator["bank_rate_hz"] == 10.0
        total = 0
        for s in SUBJECTS:
            for a in ACTIONS:
                for sub in generator.SUBACTIONS:
                    _, m, _ = generator.sequence_motion(s, a, sub, 3)
                    frames = np.arange(0, len(m["joints"]), 5)          # 10 Hz of the 50 Hz motion
                    total += 4 * len(frames)
                    if (s, a, sub) != ("S1", "Walking", 1):
                        continue
                    for cam in h36m.CAMERA_IDS:
                        b = ds.bank_select(s, a, cam)
                        b = b[ds.bank_metadata(b)["subaction"] == sub]
                        np.testing.assert_array_equal(ds.bank_metadata(b)["frame"], frames)
                        R, T = h36m.extrinsics(s, cam)
                        np.testing.assert_allclose(ds.bank_poses(b), h36m.world_to_camera(m["joints"][frames], R, T),
                                                   atol=1e-3)
        assert len(ds.bank_select()) == total


def test_every_image_row_has_its_bank_entry(tiny_synth):
    _, path = tiny_synth
    with PoseDataset(path) as ds:
        rows = ds.bank_image_rows()
        linked = np.flatnonzero(rows >= 0)
        np.testing.assert_array_equal(np.sort(rows[linked]), np.arange(ds.n))
        np.testing.assert_array_equal(ds.bank_poses(linked), ds.poses(rows[linked]))
        for key, value in ds.metadata(rows[linked]).items():
            np.testing.assert_array_equal(ds.bank_metadata(linked)[key], value)
        assert (ds.metadata()["frame"] % 5 == 0).all() and len(linked) < len(rows) / 50


def test_image_frames_lie_on_the_bank_grid_spread_over_the_sequence():
    r = generator.render_sequence("S5", "Directions", 2, seed=1, scale=3 / synth.FRAMES_PER_SEQUENCE)
    _, m, _ = generator.sequence_motion("S5", "Directions", 2, 1)
    frames = r["frame"][r["camera"] == h36m.CAMERA_IDS[0]]
    assert len(frames) == 3 and (frames % 5 == 0).all() and (np.diff(frames) > 0).all()
    gap = len(m["joints"]) / 3
    assert frames[0] < gap and (np.abs(np.diff(frames) - gap) <= 5).all()
    bank = r["bank"]
    for cam in h36m.CAMERA_IDS:
        rows, entries = r["camera"] == cam, bank["camera"] == cam
        at = np.searchsorted(bank["frame"][entries], r["frame"][rows])
        np.testing.assert_array_equal(bank["poses"][entries][at], r["poses"][rows])
    with pytest.raises(ValueError, match="do not fit on the .* 1 Hz pose bank"):
        generator.render_sequence("S5", "Directions", 2, seed=1, scale=40 / synth.FRAMES_PER_SEQUENCE,
                                  bank_rate_hz=1)


def test_image_frames_in_clips_are_consecutive_bank_frames_spread_over_the_sequence():
    # clip_frames 1 is the spread layout, drawn from the same single uniform as before clips existed.
    n_grid, n = 300, 12
    step = n_grid / n
    u = np.random.default_rng(4).uniform(0, step)
    np.testing.assert_array_equal(generator.image_frames(n_grid, n, 1, np.random.default_rng(4)),
                                  (u + step * np.arange(n)).astype(np.int64))
    picks = generator.image_frames(n_grid, 10, 4, np.random.default_rng(4))
    assert len(picks) == 10 and len(set(picks)) == 10 and picks.max() < n_grid
    clips = [picks[:4], picks[4:8], picks[8:]]
    assert all((np.diff(c) == 1).all() for c in clips)
    assert all(b[0] - a[-1] > 50 for a, b in zip(clips, clips[1:]))    # clips spread, not adjacent
    r = generator.render_sequence("S5", "Directions", 2, seed=1, scale=4 / synth.FRAMES_PER_SEQUENCE,
                                  clip_frames=2)
    frames = r["frame"][r["camera"] == h36m.CAMERA_IDS[0]]
    assert list(np.diff(frames)[[0, 2]]) == [5, 5] and np.diff(frames)[1] > 5      # 10 Hz neighbours
    with pytest.raises(ValueError, match="clips of 4 do not fit"):
        generator.image_frames(10, 12, 4, np.random.default_rng(0))


# ---------------------------------------------------------------- the capture room
CROP = (300.0, 250.0, 420.0)


def _empty_room(scene, camera, subject="S1", size=48):
    room, lights = scene
    R, T = h36m.extrinsics(subject, camera)
    return render.background(camera, CROP, R, T, room, lights[camera], size=size).astype(int)


def test_lab_room_is_shared_by_all_sequences_and_differs_between_cameras():
    a = generator.scene(3, "lab", "S1", "Walking", 1)
    b = generator.scene(3, "lab", "S9", "Sitting", 2)
    views = []
    for cam in h36m.CAMERA_IDS:
        view = _empty_room(a, cam)
        np.testing.assert_array_equal(view, _empty_room(b, cam))
        views.append(view)
    for i in range(4):
        for j in range(i):
            assert np.abs(views[i] - views[j]).mean() > 10, (h36m.CAMERA_IDS[i], h36m.CAMERA_IDS[j])
    gains = np.array([a[1][cam]["gains"] for cam in h36m.CAMERA_IDS])
    assert len(np.unique(gains.round(6), axis=0)) == 4
    assert generator.scene(4, "lab", "S1", "Walking", 1)[0] is not a[0]     # the room comes from the seed


def test_random_rooms_differ_between_sequences():
    a = generator.scene(3, "random", "S1", "Walking", 1)
    b = generator.scene(3, "random", "S9", "Walking", 1)
    c = generator.scene(3, "random", "S1", "Walking", 2)
    for cam in h36m.CAMERA_IDS:
        assert np.abs(_empty_room(a, cam) - _empty_room(b, cam)).mean() > 10
        assert np.abs(_empty_room(a, cam) - _empty_room(c, cam)).mean() > 10


def _background_error(ds, row, seed, scene):
    """Median |stored image - the scene's empty room| (levels) over the crop pixels more than 3
    pixels away from the person (the contact shadow included)."""
    meta = ds.metadata([row])
    cam, subject = meta["camera"][0], meta["subject"][0]
    pose, box = ds.poses([row])[0], ds.boxes([row])[0]
    R, T = h36m.extrinsics(subject, cam)
    style = SubjectProfile(subject, seed).style
    depth, _, _ = render.rasterize(render.body_primitives(pose, style), render.crop_rays(cam, box, 128), cam, box)
    person = np.isfinite(depth)
    for _ in range(3):
        p = np.pad(person, 1)
        person = p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
    room, lights = scene
    empty = render.background(cam, box, R, T, room, lights[cam], shadow=render.contact_shadow(pose, R, T, style))
    return np.median(np.abs(ds.read_images([row])[0].astype(int) - empty)[~person])


def test_images_show_the_lab_room_or_their_own(tiny_synth, tmp_path):
    _, path = tiny_synth
    lab = generator.scene(3, "lab")
    random_path = synth.generate(str(tmp_path / "random.h5"), scale=TINY, seed=3, workers=1, subjects=SUBJECTS,
                                 actions=("Walking",), progress=False, rooms="random")
    with PoseDataset(path) as ds:
        rows = ds.select(actions="Walking")            # no chair in the picture
        assert ds.generator["rooms"] == "lab" and set(ds.metadata(rows)["subject"]) == set(SUBJECTS)
        # Every subject, every camera: the lab's room behind the person, up to the blur and noise.
        assert max(_background_error(ds, r, 3, lab) for r in rows) < 6
    with PoseDataset(random_path) as ds:
        assert ds.generator["rooms"] == "random"
        for r in range(ds.n):
            meta = ds.metadata([r])
            own = generator.scene(3, "random", meta["subject"][0], "Walking", int(meta["subaction"][0]))
            assert _background_error(ds, r, 3, own) < 6 and _background_error(ds, r, 3, lab) > 10
        # The room setting changes the pictures only: motions, frames and the bank are the same.
        with PoseDataset(path) as lab_ds:
            rows = lab_ds.select(actions="Walking")
            np.testing.assert_array_equal(ds.poses(), lab_ds.poses(rows))
            np.testing.assert_array_equal(ds.boxes(), lab_ds.boxes(rows))
            np.testing.assert_array_equal(ds.bank_poses(), lab_ds.bank_poses(lab_ds.bank_select(actions="Walking")))

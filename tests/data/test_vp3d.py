"""VideoPose3D's positions_3d layout: writing per-camera sequences, reading them back (and
VideoPose3D's own world-coordinate file), never running a foreign pickle."""
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from data import h36m
from data import vp3d
from data.vp3d import action_key, load_positions_3d, read_vp3d, save_positions_3d
from tests.cli import run_main


def _meta():
    """Rows shuffled across two subjects, sub-actions and cameras; frames out of order."""
    rows = [(s, a, sub, c, f) for s in ("S11", "S9") for a, sub in (("Walking", 1), ("Walking", 2), ("Eating", 1))
            for c in ("55011271", "54138969") for f in (10, 0, 5)]
    order = np.random.default_rng(0).permutation(len(rows))
    cols = list(zip(*[rows[i] for i in order]))
    return {"subject": np.array(cols[0], dtype=object), "action": np.array(cols[1], dtype=object),
            "subaction": np.array(cols[2]), "camera": np.array(cols[3], dtype=object), "frame": np.array(cols[4])}


def test_round_trip_layout_and_vp3d_reading(tmp_path):
    meta = _meta()
    poses = np.random.default_rng(1).normal(0, 300, (len(meta["frame"]), 17, 3)).astype(np.float32)
    path = tmp_path / "preds.npz"
    save_positions_3d(path, poses, meta, extra={"positions_3d_gt": poses + 1}, method="StructNet-Max")
    got = load_positions_3d(path)
    assert list(got) == ["S9", "S11"]                                   # Human3.6M order
    assert list(got["S9"]) == ["Eating", "Walking", "Walking 1"]       # sub-action 2 -> "Walking 1"
    raw = read_vp3d(path)
    cams, frames = raw["cameras"].item(), raw["frames"].item()
    for s in ("S9", "S11"):
        for key in ("Eating", "Walking", "Walking 1"):
            assert cams[s][key] == ["54138969", "55011271"]
            for c, arr, fr in zip(cams[s][key], got[s][key], frames[s][key]):
                np.testing.assert_array_equal(fr, [0, 5, 10])           # frame order
                rows = [np.flatnonzero((meta["subject"] == s) & (meta["camera"] == c) & (meta["frame"] == f)
                                       & np.array([action_key(a, b) == key for a, b in
                                                   zip(meta["action"], meta["subaction"])]))[0] for f in fr]
                assert arr.shape == (3, 17, 3) and arr.dtype == np.float32
                np.testing.assert_allclose(arr, poses[rows] / 1000.0, rtol=1e-6)   # metres
    assert load_positions_3d(path, "positions_3d_gt")["S9"]["Eating"][0][0, 0, 0] == pytest.approx(
        got["S9"]["Eating"][0][0, 0, 0] + 0.001, abs=1e-6)
    assert list(raw["joint_names"]) == list(h36m.JOINT_NAMES) and str(raw["units"]) == "m"
    assert str(raw["method"]) == "StructNet-Max"
    # VideoPose3D's own way of reading it
    z = np.load(path, allow_pickle=True)
    np.testing.assert_array_equal(z["positions_3d"].item()["S11"]["Walking 1"][1], got["S11"]["Walking 1"][1])


def test_reads_videopose3d_world_file_with_32_joints(tmp_path):
    world = np.random.default_rng(2).normal(0, 1, (7, 32, 3)).astype(np.float32)
    path = tmp_path / "data_3d_h36m.npz"
    np.savez_compressed(path, positions_3d={"S1": {"Directions 1": world}})   # as prepare_data_h36m.py writes it
    got = load_positions_3d(path)
    assert list(got["S1"]) == ["Directions 1"] and len(got["S1"]["Directions 1"]) == 1
    np.testing.assert_array_equal(got["S1"]["Directions 1"][0], world[:, list(h36m.H36M32_TO_17)])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo owned",))


def test_foreign_pickles_and_bad_files_are_refused(tmp_path):
    evil = tmp_path / "evil.npz"
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": ()})
    pickle.dump({"S1": {"Walking": _Evil()}}, buf, protocol=3)
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("positions_3d.npy", buf.getvalue())
    with pytest.raises(ValueError, match="refused to load .*system"):
        load_positions_3d(evil)
    with pytest.raises(ValueError, match="no such file"):
        load_positions_3d(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not an .npz"):
        load_positions_3d(tmp_path / "text.npz")
    np.savez(tmp_path / "other.npz", poses=np.zeros((2, 17, 3)))
    with pytest.raises(ValueError, match="no 'positions_3d'"):
        load_positions_3d(tmp_path / "other.npz")
    np.savez(tmp_path / "bad.npz", positions_3d={"S1": {"Walking": [np.zeros((4, 16, 3))]}})
    with pytest.raises(ValueError, match=r"\(frames, 17 or 32, 3\)"):
        load_positions_3d(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="poses must be"):
        save_positions_3d(tmp_path / "x.npz", np.zeros((3, 16, 3)), _meta())


# ---------------------------------------------------------------- VideoPose3D's world file (data_3d_h36m.npz)
def test_world_camera_round_trip_is_exact():
    rng = np.random.default_rng(3)
    points = rng.normal(0, 1000, (50, 17, 3)) + [0, 0, 900]            # world mm, z up
    for s in h36m.ALL_SUBJECTS:
        for c in h36m.CAMERA_IDS:
            R, T = h36m.extrinsics(s, c)
            cam = h36m.world_to_camera(points, R, T)
            assert np.abs(h36m.camera_to_world(cam, R, T) - points).max() <= 1e-6       # mm
    # to_world per row, each by its subject's and camera's extrinsics: four views of one pose meet
    meta = {"subject": np.array(["S9"] * 4 + ["S11"] * 4), "camera": np.array(list(h36m.CAMERA_IDS) * 2)}
    cams = np.stack([h36m.world_to_camera(points[i // 4], *h36m.extrinsics(s, c))
                     for i, (s, c) in enumerate(zip(meta["subject"], meta["camera"]))])
    back = vp3d.to_world(cams, meta)
    np.testing.assert_allclose(back, np.repeat(points[:2], 4, axis=0), atol=1e-6)


def test_joint_mapping_is_videopose3ds():
    # VideoPose3D's remove_joints list; what it keeps is data.h36m's 32 -> 17 selection, in order
    assert vp3d.VP3D_KEPT_JOINTS == h36m.H36M32_TO_17
    assert set(vp3d.VP3D_KEPT_JOINTS) | set(vp3d.VP3D_REMOVED_JOINTS) == set(range(32))


def _identifiable(frames, n_joints=32):
    """World poses (m) whose mocap joint j sits at x = j / 100 and whose frame k at y = k / 1000."""
    w = np.zeros((frames, n_joints, 3), np.float32)
    w[:, :, 0] = np.arange(n_joints) / 100.0
    w[:, :, 1] = np.arange(frames)[:, None] / 1000.0
    w[:, :, 2] = 1.0
    return w


def test_32_joints_read_into_17_by_name(tmp_path):
    path = tmp_path / "data_3d_h36m.npz"
    np.savez_compressed(path, positions_3d={"S1": {"Walking": _identifiable(6)}})
    got = vp3d.read_world_positions(path)["S1"][("Walking", 1)]
    assert got.shape == (6, 17, 3)
    mocap = np.round(got[0, :, 0] * 100).astype(int)
    names = dict(zip(h36m.JOINT_NAMES, mocap))
    # the release's 32-joint skeleton: 0 hip, 1-3 right leg, 6-8 left leg, 12 spine, 13 thorax,
    # 14 neck/nose, 15 head, 17-19 left arm, 25-27 right arm
    assert names == {"Hip": 0, "RHip": 1, "RKnee": 2, "RFoot": 3, "LHip": 6, "LKnee": 7, "LFoot": 8, "Spine": 12,
                     "Thorax": 13, "Neck/Nose": 14, "Head": 15, "LShoulder": 17, "LElbow": 18, "LWrist": 19,
                     "RShoulder": 25, "RElbow": 26, "RWrist": 27}
    np.testing.assert_allclose(got[:, 0, 1], np.arange(6) / 1000.0, atol=1e-7)       # frames in order
    # 17 joints are taken as they are
    np.savez_compressed(path, positions_3d={"S1": {"Walking": _identifiable(4, 17)}})
    np.testing.assert_array_equal(vp3d.read_world_positions(path)["S1"][("Walking", 1)],
                                  _identifiable(4, 17).astype(np.float64))


def test_action_names_and_their_quirks():
    # S1's files say TakingPhoto / WalkingDog, VideoPose3D's keys Photo / WalkDog: both are read
    assert h36m.parse_sequence_name("S1", "TakingPhoto 1") == h36m.parse_sequence_name("S1", "Photo 1") == ("Photo", 2)
    assert h36m.parse_sequence_name("S1", "WalkingDog") == h36m.parse_sequence_name("S1", "WalkDog") == ("WalkDog", 1)
    # numbers are not sub-actions: S1 Sitting 1/2, S11 Phoning 2/3, S5 Discussion 2/3, S11 Directions 1 (sub-action 2)
    assert h36m.parse_sequence_name("S1", "Sitting 1") == ("Sitting", 1)
    assert h36m.parse_sequence_name("S11", "Phoning 2") == ("Phoning", 1)
    assert h36m.parse_sequence_name("S11", "Phoning 3") == ("Phoning", 2)
    assert h36m.parse_sequence_name("S5", "Discussion 2") == ("Discussion", 1)
    assert h36m.parse_sequence_name("S11", "Directions 1") == ("Directions", 2)
    assert h36m.parse_sequence_name("S9", "Walking 1") == ("Walking", 2)
    # written back with VideoPose3D's keys, canonical spelling
    assert vp3d.action_key("Photo", 2, "S1") == "Photo 1" and vp3d.action_key("WalkDog", 1, "S1") == "WalkDog"
    assert vp3d.action_key("Phoning", 1, "S11") == "Phoning 2" and vp3d.action_key("Sitting", 2, "S1") == "Sitting 2"
    assert vp3d.action_key("Walking", 2) == "Walking 1"                  # no subject: the plain rule
    for s in h36m.ALL_SUBJECTS:
        names = h36m.sequence_names(s)
        assert len(names) == 30 and set(names) == {(a, k) for a in h36m.ACTIONS for k in (1, 2)}
        for key, name in names.items():
            assert h36m.parse_sequence_name(s, name) == key and vp3d.action_key(*key, s) == name
        # the one numbering: prepare_h36m's rule on the release's names gives the same sub-actions
        assert {k: v for k, v in h36m.number_subactions(h36m.RELEASE_SEQUENCES[s]).items()} == \
            {raw: h36m.parse_sequence_name(s, raw) for raw in h36m.RELEASE_SEQUENCES[s]}
    with pytest.raises(ValueError, match="not a sequence of S1 .*'Sitting 1' and 'Sitting 2'"):
        h36m.parse_sequence_name("S1", "Sitting 3")


def test_world_bank_in_camera_coordinates(tmp_path):
    rng = np.random.default_rng(4)
    walk = rng.normal(0, 0.3, (12, 32, 3)) + [0.2, -0.1, 1.0]
    phone2, phone3, direc = (rng.normal(0, 0.3, (n, 32, 3)) + [0, 0, 1.0] for n in (7, 3, 5))
    path = tmp_path / "data_3d_h36m.npz"
    np.savez_compressed(path, positions_3d={"S11": {"Phoning 3": phone3, "Walking": walk, "Phoning 2": phone2,
                                                    "Directions 1": direc}, "S1": {"Photo 1": walk[:4]}})
    poses, meta = vp3d.world_bank(path, rate_hz=10, subjects="S11", cameras=h36m.CAMERA_IDS[:2])
    seqs = [("Directions", 2, direc), ("Phoning", 1, phone2), ("Phoning", 2, phone3), ("Walking", 1, walk)]
    row = 0
    for action, sub, world in seqs:                          # ACTIONS order, then sub-actions
        frames = np.arange(0, len(world), 5)
        for cam in h36m.CAMERA_IDS[:2]:
            want = h36m.world_to_camera(world[frames][:, list(h36m.H36M32_TO_17)] * 1000, *h36m.extrinsics("S11", cam))
            sl = slice(row, row + len(frames))
            np.testing.assert_allclose(poses[sl], want, atol=1e-3)          # mm, float32
            assert set(meta["action"][sl]) == {action} and set(meta["subaction"][sl]) == {sub}
            assert set(meta["camera"][sl]) == {cam} and list(meta["frame"][sl]) == list(frames)
            row += len(frames)
    assert row == len(poses) and poses.dtype == np.float32 and set(meta["subject"]) == {"S11"}
    assert (poses[:, 0, 2] > 0).all()                                   # in front of the cameras
    # the same poses from both spellings of S1's photo sequence
    np.savez_compressed(tmp_path / "old.npz", positions_3d={"S1": {"TakingPhoto 1": walk[:4]}})
    a, b = vp3d.world_bank(path, 50, "S1"), vp3d.world_bank(tmp_path / "old.npz", 50, "S1")
    np.testing.assert_array_equal(a[0], b[0])
    assert set(a[1]["action"]) == {"Photo"} and set(a[1]["subaction"]) == {2}
    with pytest.raises(ValueError, match="divided by a whole number"):
        vp3d.world_bank(path, rate_hz=3)


@pytest.mark.parametrize("tree, message", [
    ({"S1": {"Walking": np.zeros((3, 32, 3))}}, "no subject S9 in positions_3d .it holds S1."),
    ({"S1": {"Walking": np.zeros((3, 32, 3))}, "S9": {}}, "positions_3d holds no sequence of S9"),
    ({"S1": {"Walking": [np.zeros((3, 32, 3))] * 4}}, r"\['S1'\]\['Walking'\] is a list of arrays"),
    ({"S9": {"Walking": np.zeros((3, 16, 3))}}, r"is float64 \(3, 16, 3\); expected \(frames, 32 or 17, 3\)"),
    ({"S9": {"Walking": np.zeros((3, 96))}}, r"is float64 \(3, 96\)"),
    ({"S9": {"Walking": np.full((3, 32, 3), np.nan)}}, "3 of 3 frames hold NaN or inf .the first: frame 0."),
    ({"S9": {"Walking": np.full((3, 32, 3), 1500.0)}}, "coordinates up to 1500: expected metres"),
    ({"S9": {"Sitting 3": np.zeros((3, 32, 3))}}, "'Sitting 3' is not a sequence of S9"),
    ({"S9": {"_ALL": np.zeros((3, 32, 3))}}, "unknown action '_ALL'"),
    ({"S2": {"Walking": np.zeros((3, 32, 3))}}, r"positions_3d\['S2'\]: unknown subject"),
    ({"S1": {"Photo 1": np.zeros((3, 32, 3)), "TakingPhoto 1": np.zeros((3, 32, 3))}}, "a second array for Photo"),
])
def test_bad_world_files_are_one_line_errors(tmp_path, tree, message):
    path = tmp_path / "bad.npz"
    np.savez(path, positions_3d=tree)
    subjects = "S9" if "S9" in message else None
    with pytest.raises(ValueError, match=message) as err:
        vp3d.read_world_positions(path, subjects=subjects)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_non_npz_world_files_are_one_line_errors(tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    for path, message in ((tmp_path / "text.npz", "not an .npz"), (tmp_path / "none.npz", "no such file")):
        with pytest.raises(ValueError, match=message):
            vp3d.read_world_positions(path)
    np.savez(tmp_path / "flat.npz", positions_3d=np.zeros((3, 32, 3)))
    with pytest.raises(ValueError, match="not a dict"):
        vp3d.read_world_positions(tmp_path / "flat.npz")


# ---------------------------------------------------------------- python -m data.vp3d --bank ... --into ...
def _world_release(rng):
    """{subject: {VideoPose3D key: (frames, 32, 3) world m}}: S1 Walking (sub-action 1) and Photo 1
    (sub-action 2), S5 Eating."""
    def seq(n):
        return rng.normal(0, 0.25, (n, 32, 3)) + [0.3, -0.2, 1.0]
    return {"S1": {"Walking": seq(21), "Photo 1": seq(16)}, "S5": {"Eating": seq(6)}}


def _file_from(tmp_path, world, rng, noise_mm=0.01, extra_rows=True):
    """A dataset file with images of frames 0, 5, 10 of S1 Walking and Photo 1 from two cameras,
    their poses world_to_camera of `world` plus noise_mm; and (extra_rows) S9 Greeting rows, which the
    .npz lacks. Its bank (10 Hz) holds the image rows' poses and one pose-only frame per sequence."""
    from data.dataset import DatasetWriter

    path = str(tmp_path / "d.h5")
    with DatasetWriter(path, source="h36m", bank_rate_hz=10.0) as w:
        for s in ("S1", "S9"):
            w.set_tpose(s, rng.normal(0, 300, (17, 3)))
        for (action, sub, key) in (("Walking", 1, "Walking"), ("Photo", 2, "Photo 1")):
            for cam in h36m.CAMERA_IDS[:2]:
                cam_poses = h36m.world_to_camera(world["S1"][key][:, list(h36m.H36M32_TO_17)] * 1000,
                                                 *h36m.extrinsics("S1", cam))
                poses = cam_poses[[0, 5, 10]] + rng.normal(0, noise_mm / 3, (3, 17, 3))
                w.append(rng.integers(0, 256, (3, 128, 128, 3), dtype=np.uint8), poses, "S1", action, sub, cam,
                         [0, 5, 10])
                w.append_bank(np.concatenate([poses, cam_poses[[15]]]), "S1", action, sub, cam, [0, 5, 10, 15])
        if extra_rows:
            poses = rng.normal(0, 300, (2, 17, 3)) + [0, 0, 4500]
            w.append(rng.integers(0, 256, (2, 128, 128, 3), dtype=np.uint8), poses, "S9", "Greeting", 1,
                     "54138969", [0, 5])
            w.append_bank(poses, "S9", "Greeting", 1, "54138969", [0, 5])
    return path


def _main(argv, capsys):
    return run_main(vp3d.main, argv, capsys)


def test_bank_from_videopose3d_world_file(tmp_path, capsys):
    from data.dataset import PoseDataset

    rng = np.random.default_rng(5)
    world = _world_release(rng)
    npz = tmp_path / "data_3d_h36m.npz"
    np.savez_compressed(npz, positions_3d=world)
    data = _file_from(tmp_path, world, rng)
    with PoseDataset(data) as ds:
        before, images = ds.fingerprint(), ds.read_images(np.arange(ds.n))
    out = tmp_path / "new.h5"
    code, text, err = _main(["--bank", npz, "--into", data, "--out", out], capsys)
    assert code == 0, err
    with PoseDataset(data) as ds:
        assert ds.fingerprint() == before                          # --out leaves --into alone
    with PoseDataset(out) as ds:
        assert ds.bank_rate_hz == 10.0 and ds.n == 14
        np.testing.assert_array_equal(ds.read_images(np.arange(ds.n)), images)   # copied as stored
        meta, rows = ds.bank_metadata(), ds.bank_image_rows()
        # 4 cameras x (5 + 4 frames of S1, 2 of S5) from the .npz, plus the 2 S9 rows it lacks
        assert len(rows) == 4 * (5 + 4 + 2) + 2
        assert set(meta["subject"]) == {"S1", "S5", "S9"} and ds.tpose("S5").shape == (17, 3)
        linked = rows >= 0
        assert linked.sum() == ds.n
        np.testing.assert_array_equal(ds.bank_poses()[linked], ds.poses(rows[linked]))   # the images' own poses
        for i in np.flatnonzero(~linked & (meta["subject"] != "S9")):
            key = vp3d.action_key(meta["action"][i], meta["subaction"][i], meta["subject"][i])
            pose = world[meta["subject"][i]][key][meta["frame"][i], list(h36m.H36M32_TO_17)] * 1000
            want = h36m.world_to_camera(pose, *h36m.extrinsics(meta["subject"][i], meta["camera"][i]))
            np.testing.assert_allclose(ds.bank_poses([i])[0], want, atol=1e-3)
        assert set(meta["frame"][meta["subject"] == "S1"]) == {0, 5, 10, 15, 20}
        info = json.loads(ds._file.attrs["bank_source"])
        assert info["linked"] == 12 and info["from_images"] == 2 and info["max_difference_mm"] < 0.05
    assert "12 image rows matched" in text and "2 entries kept from image rows" in text
    # in place, at 50 Hz: every frame of every sequence
    code, _, err = _main(["--bank", npz, "--into", data, "--rate", "50", "--subjects", "S1"], capsys)
    assert code == 0, err
    with PoseDataset(data) as ds:
        assert ds.bank_rate_hz == 50.0 and len(ds.bank_image_rows()) == 4 * (21 + 16) + 2
        assert set(ds.bank_metadata()["subject"]) == {"S1", "S9"}


def test_bank_from_world_file_refuses_what_does_not_fit(tmp_path, capsys):
    from data.dataset import PoseDataset

    rng = np.random.default_rng(6)
    world = _world_release(rng)
    npz = tmp_path / "data_3d_h36m.npz"
    np.savez_compressed(npz, positions_3d=world)
    data = _file_from(tmp_path, world, rng, noise_mm=30.0)
    with PoseDataset(data) as ds:
        before = ds.fingerprint()
    code, _, err = _main(["--bank", npz, "--into", data], capsys)
    assert code == 1 and err.count("\n") == 1 and "more than 5 mm: not the same sequence" in err
    # another sequence under the images' name (a numbering that differs) is caught the same way
    np.savez_compressed(tmp_path / "other.npz", positions_3d={"S1": {"Walking": world["S1"]["Walking"],
                                                                    "Photo 1": world["S1"]["Walking"][:16]}})
    code, _, err = _main(["--bank", tmp_path / "other.npz", "--into", data, "--tolerance-mm", "100"], capsys)
    assert code == 1 and "S1, Photo, 2, " in err and "more than 100 mm" in err
    with PoseDataset(data) as ds:
        assert ds.fingerprint() == before                          # an error leaves the file as it was
    code, _, err = _main(["--bank", npz, "--into", data, "--tolerance-mm", "100"], capsys)
    assert code == 0, err                                  # within 100 mm: kept, the images' poses win
    code, _, err = _main(["--bank", npz, "--into", data, "--rate", "25"], capsys)
    assert code == 1 and "frame 5, not on the grid of a 25 Hz bank" in err
    code, _, err = _main(["--bank", npz, "--into", data, "--subjects", "S9"], capsys)
    assert code == 1 and "no subject S9 in positions_3d" in err
    (tmp_path / "text.npz").write_text("no")
    code, _, err = _main(["--bank", tmp_path / "text.npz", "--into", data], capsys)
    assert code == 1 and "not an .npz archive" in err and err.count("\n") == 1
    for argv, words in ((["--rate", "3"], "--rate: bank rate 3.0 Hz must be"), (["--subjects", "S3"], "--subjects"),
                        (["--tolerance-mm", "-1"], "--tolerance-mm")):
        code, _, err = _main(["--bank", npz, "--into", data] + argv, capsys)
        assert code == 2 and words in err
    code, _, err = _main(["--bank", tmp_path / "none.npz", "--into", data], capsys)
    assert code == 2 and "--bank" in err and "no such file" in err
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())

import json
import os

import h5py
import numpy as np
import pytest
from hypothesis import given, strategies as st

from data import h36m
from data.dataset import DatasetError, DatasetWriter, PoseDataset, bank_step, root_relative
from tests.data.conftest import write_tiny_dataset


# ---------------------------------------------------------------- writer / reader round trip
def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 128, 128, 3), dtype=np.uint8)
    poses = rng.normal(0, 300, (5, 17, 3)) + [0, 0, 4000]
    path = tmp_path / "rt.h5"
    with DatasetWriter(path, source="h36m") as w:
        w.set_tpose("S9", np.ones((17, 3)))
        w.append(images[:3], poses[:3], "S9", "TakingPhoto 1", 2, "58860488", [10, 15, 20])
        w.append(images[3:], poses[3:], ["S9", "S9"], ["Walking", "WalkDog"], [1, 1],
                 ["54138969", "54138969"], [0, 5])
    assert not os.path.exists(str(path) + ".tmp")
    with PoseDataset(path) as ds:
        assert ds.n == 5 and ds.source == "h36m" and ds.subjects == ("S9",)
        assert ds.actions == ("Photo", "WalkDog", "Walking")
        np.testing.assert_array_equal(ds.read_images([4, 0, 2]), images[[4, 0, 2]])
        np.testing.assert_allclose(ds.poses(), poses.astype(np.float32))
        assert ds.poses().dtype == np.float32
        meta = ds.metadata([0, 3, 4])
        assert list(meta["action"]) == ["Photo", "Walking", "WalkDog"]
        assert list(meta["camera"]) == ["58860488", "54138969", "54138969"]
        assert list(meta["subaction"]) == [2, 1, 1] and list(meta["frame"]) == [10, 0, 5]
        np.testing.assert_allclose(ds.tpose("S9"), np.ones((17, 3)))
        assert set(ds.cameras) == set(h36m.CAMERA_IDS)
        assert ds.cameras["54138969"].fx == h36m.CAMERAS["54138969"].fx
        # Default boxes: the square box around the projected joints.
        expected = h36m.square_box(h36m.project(poses[3], "54138969"), 0.2)
        np.testing.assert_allclose(ds.boxes([3])[0], expected, rtol=1e-5)


def test_writer_discards_file_on_error(tmp_path):
    path = tmp_path / "bad.h5"
    with pytest.raises(RuntimeError):
        with DatasetWriter(path, source="synthetic") as w:
            w.set_tpose("S1", np.zeros((17, 3)))
            w.append(np.zeros((1, 128, 128, 3), np.uint8), np.zeros((1, 17, 3)), "S1", "Eating", 1,
                     "54138969", 0)
            raise RuntimeError("boom")
    assert not os.path.exists(path) and not os.path.exists(str(path) + ".tmp")


@pytest.mark.parametrize("kwargs, message", [
    (dict(poses=np.full((1, 17, 3), np.nan)), "NaN"),
    (dict(images=np.zeros((1, 64, 64, 3), np.uint8)), "images must be uint8"),
    (dict(subject="S3"), "unknown subject 'S3'"),
    (dict(action="Dancing"), "unknown action 'Dancing'"),
    (dict(camera="12345678"), "camera '12345678'"),
])
def test_writer_rejects_bad_rows(tmp_path, kwargs, message):
    row = dict(images=np.zeros((1, 128, 128, 3), np.uint8), poses=np.ones((1, 17, 3)), subject="S1",
               action="Eating", subaction=1, camera="54138969", frame=0)
    row.update(kwargs)
    w = DatasetWriter(tmp_path / "x.h5", source="synthetic")
    with pytest.raises(ValueError, match=message):
        w.append(**row)
    w.abort()


def test_writer_requires_tposes(tmp_path):
    w = DatasetWriter(tmp_path / "x.h5", source="synthetic")
    w.append(np.zeros((1, 128, 128, 3), np.uint8), np.ones((1, 17, 3)), "S5", "Eating", 1, "54138969", 0)
    with pytest.raises(ValueError, match="no T pose given for subjects S5"):
        w.close()
    assert not os.path.exists(tmp_path / "x.h5")


# ---------------------------------------------------------------- validation
def test_missing_file_and_not_hdf5(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        PoseDataset(tmp_path / "nope.h5")
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(DatasetError, match=r"junk.h5: not an HDF5 file"):
        PoseDataset(junk)


def _corrupt(path, edit):
    with h5py.File(path, "r+") as f:
        edit(f)


def _replace(name, data):
    def edit(f):
        del f[name]
        f[name] = data
    return edit


def _set_attr(name, value):
    def edit(f):
        f.attrs[name] = value
    return edit


def _del_attr(name):
    def edit(f):
        del f.attrs[name]
    return edit


def _nan_pose(f):
    p = f["poses"][:]
    p[7, 3, 1] = np.nan
    f["poses"][:] = p


@pytest.mark.parametrize("edit, field, text", [
    (_replace("poses", np.zeros((48, 16, 3), np.float32)), "poses", "expected float (48,17,3)"),
    (_replace("poses", np.zeros((48, 17, 3), np.int32)), "poses", "expected float"),
    (_nan_pose, "poses", "row 7 is not finite"),
    (_replace("images", np.zeros((48, 128, 128), np.uint8)), "images", "expected uint8 (N,S,S,3)"),
    (_replace("images", np.zeros((48, 128, 128, 3), np.float32)), "images", "expected uint8"),
    (_replace("subject", np.array([b"S1"] * 47)), "subject", "expected fixed-length bytes (48,)"),
    (_replace("subject", np.array([b"S4"] * 48)), "subject", "unknown subject 'S4'"),
    (_replace("action", np.array([b"Jumping"] * 48)), "action", "unknown action 'Jumping'"),
    (_replace("frame", np.zeros(48, np.float32)), "frame", "expected integers"),
    (_replace("camera", np.array([b"99999999"] * 48)), "camera", "no entry in the cameras"),
    (_replace("box", np.zeros((48, 2), np.float32)), "box", "expected float (48,3)"),
    (lambda f: f.__delitem__("subaction"), "subaction", "missing dataset"),
    (lambda f: f.__delitem__("tpose/S9"), "tpose", "missing T pose of subject S9"),
    (_set_attr("format_version", 2), "format_version", "expected 1"),
    (_set_attr("source", "kinect"), "source", "expected one of synthetic, h36m"),
    (_del_attr("source"), "source", "missing file attribute"),
    (_set_attr("joint_names", json.dumps(["a"] * 17)), "joint_names", "expected the 17"),
    (_set_attr("parents", np.zeros(17, np.int32)), "parents", "expected"),
    (_set_attr("cameras", "{not json"), "cameras", "expected a JSON"),
])
def test_malformed_fields_are_named(tiny_path, edit, field, text):
    _assert_rejected(tiny_path, edit, field, text)


def test_stored_numbers_read_as_numbers(tiny_path):
    # a NumPy scalar shows as 2, not np.int64(2)
    _assert_rejected(tiny_path, _set_attr("format_version", np.int64(2)), "format_version", "expected 1, got 2")
    with pytest.raises(DatasetError, match=r"expected 1, got 2$"):
        PoseDataset(tiny_path)


def test_writer_errors_name_the_file(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(DatasetError, match=r"x.h5: cannot write the dataset file \(not a directory: .*file\)$"):
        DatasetWriter(tmp_path / "file" / "x.h5", source="synthetic")


def _assert_rejected(path, edit, field, text):
    """After `edit`, opening `path` fails with one line naming `field` and containing `text`."""
    with PoseDataset(path):
        pass                                   # valid before the edit
    _corrupt(path, edit)
    with pytest.raises(DatasetError) as info:
        PoseDataset(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: field '{field}'")
    assert text in message


# ---------------------------------------------------------------- selection
def test_select(tiny_path):
    with PoseDataset(tiny_path) as ds:
        assert ds.n == 2 * 2 * 2 * 6
        idx = ds.select(subjects="S9", actions=["Eating"])
        assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0) and len(idx) == 12
        meta = ds.metadata(idx)
        assert set(meta["subject"]) == {"S9"} and set(meta["action"]) == {"Eating"}
        assert len(ds.select(cameras="55011271")) == 24
        assert len(ds.select(subjects="test", actions="Walking,Eating")) == 24
        np.testing.assert_array_equal(ds.select(), np.arange(ds.n))


@pytest.mark.parametrize("kwargs, text", [
    (dict(subjects="S5"), "no subject S5 in the file; it holds S1, S9"),
    (dict(subjects=["S1", "S11"]), "no subject S11 in the file; it holds S1, S9"),
    (dict(subjects="S42"), "unknown subject 'S42'"),
    (dict(actions="Sitting"), "no action 'Sitting' in the file; it holds Eating, Walking"),
    (dict(actions="Dancing"), "no action 'Dancing'"),
    (dict(cameras="60457274"), "no camera 60457274 in the file; it holds 54138969, 55011271"),
])
def test_select_unknown_names(tiny_path, kwargs, text):
    with PoseDataset(tiny_path) as ds:
        with pytest.raises(DatasetError, match=text):
            ds.select(**kwargs)


def test_select_accepts_aliases(tmp_path):
    path = write_tiny_dataset(tmp_path / "a.h5", actions=("Photo",))
    with PoseDataset(path) as ds:
        np.testing.assert_array_equal(ds.select(actions="TakingPhoto"), ds.select(actions="Photo"))
        np.testing.assert_array_equal(ds.select(actions="TakingPhoto 1, Photo"), ds.select(actions="Photo"))
        np.testing.assert_array_equal(ds.select(subjects="s1 S9"), ds.select())


def test_bad_indices(tiny_path):
    with PoseDataset(tiny_path) as ds:
        with pytest.raises(DatasetError, match="out of range"):
            ds.poses([0, ds.n])
        with pytest.raises(DatasetError, match="1-D integer"):
            ds.read_images(np.array([0.5]))
        with pytest.raises(DatasetError, match="no T pose for subject 'S5'"):
            ds.tpose("S5")


@given(st.lists(st.integers(0, 47), min_size=1, max_size=60))
def test_read_images_any_order(idx):
    # One file for all examples: writing is the slow part.
    path = _shared_file()
    with PoseDataset(path) as ds:
        got = ds.read_images(idx, chunk=7)
        with h5py.File(path, "r") as f:
            expected = np.stack([f["images"][i] for i in idx])
    np.testing.assert_array_equal(got, expected)


_SHARED = {}


def _shared_file():
    if "path" not in _SHARED:
        import tempfile
        _SHARED["dir"] = tempfile.TemporaryDirectory()
        _SHARED["path"] = write_tiny_dataset(os.path.join(_SHARED["dir"].name, "s.h5"), image_size=8)
    return _SHARED["path"]


# ---------------------------------------------------------------- root-relative poses
def test_root_relative():
    poses = np.random.default_rng(0).normal(size=(4, 17, 3))
    rel = root_relative(poses)
    assert np.all(rel[:, 0] == 0)
    np.testing.assert_allclose(rel[:, 5] - rel[:, 2], poses[:, 5] - poses[:, 2])


# ---------------------------------------------------------------- the pose bank
def test_bank_round_trip(bank_path):
    with PoseDataset(bank_path) as ds:
        assert ds.has_bank and ds.bank_rate_hz == 10.0
        b = ds.bank_select()
        assert b.dtype == np.int64 and len(b) == 2 * 2 * 2 * (6 + 3)
        rows = ds.bank_image_rows()
        linked = rows >= 0
        assert rows.dtype == np.int64 and linked.sum() == ds.n and (rows[~linked] == -1).all()
        np.testing.assert_array_equal(np.sort(rows[linked]), np.arange(ds.n))
        np.testing.assert_array_equal(ds.bank_poses(b[linked]), ds.poses(rows[linked]))
        meta, image_meta = ds.bank_metadata(b[linked]), ds.metadata(rows[linked])
        for key in image_meta:
            np.testing.assert_array_equal(meta[key], image_meta[key])
        # The pose-only entries are the 3 frames after each sequence's last image.
        assert set(ds.bank_metadata(b[~linked])["frame"]) == {30, 35, 40}
        sel = ds.bank_select(subjects="S9", actions="Eating", cameras="55011271")
        assert len(sel) == 9 and set(ds.bank_metadata(sel)["subject"]) == {"S9"}
        assert ds.bank_poses(sel).dtype == np.float32 and ds.bank_poses(sel).shape == (9, 17, 3)
        assert (ds.bank_poses()[:, :, 2].mean(axis=1) > 3000).all()   # absolute, camera coordinates
        with pytest.raises(DatasetError, match="out of range"):
            ds.bank_poses([len(b)])


def test_without_a_bank_the_image_rows_are_the_bank(tiny_path):
    with PoseDataset(tiny_path) as ds:
        assert not ds.has_bank and ds.bank_rate_hz is None
        for kwargs in ({}, dict(subjects="S9"), dict(actions="Eating", cameras="55011271"),
                       dict(subjects="train", actions=["Walking"])):
            np.testing.assert_array_equal(ds.bank_select(**kwargs), ds.select(**kwargs))
        np.testing.assert_array_equal(ds.bank_poses(), ds.poses())
        np.testing.assert_array_equal(ds.bank_poses([3, 1]), ds.poses([3, 1]))
        np.testing.assert_array_equal(ds.bank_image_rows(), np.arange(ds.n))
        for key, value in ds.metadata().items():
            np.testing.assert_array_equal(ds.bank_metadata()[key], value)


@pytest.mark.parametrize("kwargs, text", [
    (dict(subjects="S5"), "no subject S5 in the file; it holds S1, S9"),
    (dict(subjects="S42"), "unknown subject 'S42'"),
    (dict(actions="Sitting"), "no action 'Sitting' in the file; it holds Eating, Walking"),
    (dict(cameras="60457274"), "no camera 60457274 in the file; it holds 54138969, 55011271"),
])
@pytest.mark.parametrize("fixture", ["tiny_path", "bank_path"])
def test_bank_select_unknown_names(request, fixture, kwargs, text):
    with PoseDataset(request.getfixturevalue(fixture)) as ds:
        with pytest.raises(DatasetError, match=text):
            ds.bank_select(**kwargs)


def _edit_bank(name, change):
    def edit(f):
        data = f[f"bank/{name}"][:]
        data = change(data)
        del f[f"bank/{name}"]
        f[f"bank/{name}"] = data
    return edit


def _first_linked(f):
    return int(np.flatnonzero(f["bank/image_row"][:] >= 0)[0])


def _shift_linked_pose(f):
    p = f["bank/poses"][:]
    p[_first_linked(f), 0, 0] += 1.0
    f["bank/poses"][:] = p


def _retarget_linked_frame(f):
    fr = f["bank/frame"][:]
    fr[_first_linked(f)] += 5
    f["bank/frame"][:] = fr


def _nan(data):
    data[4, 2, 1] = np.nan
    return data


def _set(index, value):
    def change(data):
        data[index] = value
        return data
    return change


@pytest.mark.parametrize("edit, field, text", [
    (_edit_bank("poses", lambda d: d[:, :16]), "bank/poses", "expected float (72,17,3)"),
    (_edit_bank("poses", _nan), "bank/poses", "row 4 is not finite"),
    (_edit_bank("image_row", lambda d: d.astype(np.float32)), "bank/image_row", "expected integers"),
    (_edit_bank("image_row", _set(0, 48)), "bank/image_row", "names row 48, outside [-1, 48)"),
    (_edit_bank("image_row", _set(0, -2)), "bank/image_row", "outside [-1, 48)"),
    (_edit_bank("image_row", _set(0, -1)), "bank/image_row", "image row 0 has 0 bank entries"),
    (_edit_bank("image_row", _set(1, 0)), "bank/image_row", "has 2 bank entries"),
    (_edit_bank("camera", lambda d: d[:-1]), "bank/camera", "expected fixed-length bytes (72,)"),
    (_edit_bank("action", _set(5, b"Dancing")), "bank/action", "unknown action 'Dancing'"),
    (_retarget_linked_frame, "bank/frame", "but its image row"),
    (_shift_linked_pose, "bank/poses", "differs from the pose of its image row"),
    (_edit_bank("frame", _set(8, 0)), "bank/frame", "the same frame and camera"),
    (lambda f: f["bank"].attrs.__delitem__("rate_hz"), "bank/rate_hz", "expected a rate that divides 50 Hz"),
    (lambda f: f["bank"].attrs.__setitem__("rate_hz", 7.0), "bank/rate_hz", "got 7.0"),
    (lambda f: f.__delitem__("bank/subaction"), "bank/subaction", "missing dataset"),
])
def test_malformed_bank_fields_are_named(bank_path, edit, field, text):
    _assert_rejected(bank_path, edit, field, text)


def _bank_writer(path):
    w = DatasetWriter(path, source="synthetic", bank_rate_hz=25)
    w.set_tpose("S1", np.zeros((17, 3)))
    w.append(np.zeros((2, 128, 128, 3), np.uint8), np.ones((2, 17, 3)), "S1", "Eating", 1, "54138969", [0, 4])
    return w


def test_writer_links_the_bank_and_rejects_an_inconsistent_one(tmp_path):
    w = _bank_writer(tmp_path / "ok.h5")
    w.append_bank(np.ones((3, 17, 3)), "S1", "Eating", 1, "54138969", [0, 2, 4])
    w.close()
    with PoseDataset(tmp_path / "ok.h5") as ds:
        assert ds.bank_rate_hz == 25.0
        np.testing.assert_array_equal(ds.bank_image_rows(), [0, -1, 1])
    # An image row without its entry, a bank pose unlike its image's, a frame twice.
    for frames, poses, text in (([0, 2], np.ones((2, 17, 3)), r"image row 1 \('S1', 'Eating', 1, '54138969', 4\) "
                                                              "has no pose-bank entry"),
                                ([0, 4], np.full((2, 17, 3), 2.0), "differs from the pose of its image row 0"),
                                ([0, 4, 4], np.ones((3, 17, 3)), "the same frame and camera")):
        w = _bank_writer(tmp_path / "bad.h5")
        w.append_bank(poses, "S1", "Eating", 1, "54138969", frames)
        with pytest.raises(ValueError, match=text):
            w.close()
        assert not os.path.exists(tmp_path / "bad.h5") and not os.path.exists(str(tmp_path / "bad.h5") + ".tmp")
    w = DatasetWriter(tmp_path / "none.h5", source="synthetic")
    with pytest.raises(ValueError, match="needs a writer made with bank_rate_hz"):
        w.append_bank(np.ones((1, 17, 3)), "S1", "Eating", 1, "54138969", [0])
    w.abort()


@pytest.mark.parametrize("rate, step", [(50, 1), (25, 2), (10, 5), (2.5, 20), (1, 50)])
def test_bank_step(rate, step):
    assert bank_step(rate) == step


@pytest.mark.parametrize("rate", [7, 0, -10, 100, float("nan")])
def test_bank_step_rejects_rates_that_do_not_divide_50_hz(rate):
    with pytest.raises(ValueError, match="divided by a whole number"):
        bank_step(rate)

import json
import os

import h5py
import numpy as np
import pytest
from hypothesis import given, strategies as st

from data import h36m
from data.dataset import DatasetError, DatasetWriter, PoseDataset, root_relative
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
    _corrupt(tiny_path, edit)
    with pytest.raises(DatasetError) as info:
        PoseDataset(tiny_path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{tiny_path}: field '{field}")
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

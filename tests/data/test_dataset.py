import json
import os

import h5py
import numpy as np
import pytest
from hypothesis import given, strategies as st

from data import h36m
from data.dataset import (
    BatchLoader, DatasetError, DatasetWriter, ImageStats, PoseDataset,
    downsample_images, root_relative,
)
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


# ---------------------------------------------------------------- normaliser
def test_root_relative():
    poses = np.random.default_rng(0).normal(size=(4, 17, 3))
    rel = root_relative(poses)
    assert np.all(rel[:, 0] == 0)
    np.testing.assert_allclose(rel[:, 5] - rel[:, 2], poses[:, 5] - poses[:, 2])


# ---------------------------------------------------------------- image statistics
def test_image_stats_match_direct_computation(tiny_path):
    with PoseDataset(tiny_path) as ds:
        idx = ds.select(subjects="S1")
        pixels = ds.read_images(idx).reshape(-1, 3).astype(np.float64)
        stats = ImageStats.compute(ds, idx, chunk=5)
        np.testing.assert_allclose(stats.mean, pixels.mean(axis=0), rtol=1e-10)
        np.testing.assert_allclose(stats.cov, np.cov(pixels.T, bias=True), rtol=1e-8, atol=1e-8)
        # The moments stored by the writer give the same statistics without a pass.
        stored = ImageStats.for_subjects(ds, ["S1"])
        np.testing.assert_allclose(stored.cov, stats.cov, rtol=1e-8)
        np.testing.assert_allclose(stored.mean, stats.mean, rtol=1e-10)
    v = stats.eigvec
    np.testing.assert_allclose(v @ np.diag(stats.eigval) @ v.T, stats.cov, atol=1e-6)
    assert np.all(np.diff(stats.eigval) <= 0)
    assert stats.scale == pytest.approx(np.sqrt(np.trace(stats.cov) / 3))
    again = ImageStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    np.testing.assert_allclose(again.eigval, stats.eigval)


def test_color_noise_follows_covariance():
    cov = np.array([[400.0, 300, 100], [300, 500, 50], [100, 50, 200]])
    stats = ImageStats([100, 110, 120], cov)
    alpha = np.random.default_rng(0).normal(0, 0.1, (200000, 3))
    shifts = stats.color_noise(alpha)
    # alpha_i ~ N(0, s^2) along sqrt(lambda_i) p_i: the shifts' covariance is s^2 cov.
    np.testing.assert_allclose(np.cov(shifts.T), 0.01 * cov, rtol=0.03, atol=0.05)


# ---------------------------------------------------------------- loader
def _stats():
    return ImageStats([120.0, 110.0, 100.0], np.diag([900.0, 800.0, 700.0]))


def test_loader_shapes_and_test_mode(tiny_path):
    with PoseDataset(tiny_path) as ds:
        idx = ds.select(subjects="S9")
        loader = BatchLoader(ds, idx, 5, train=False, stats=_stats())
        assert loader.n_batches == 5                     # 24 rows: the partial batch is kept
        batches = list(loader.epoch(0))
        assert [len(b.index) for b in batches] == [5, 5, 5, 5, 4]
        b = batches[0]
        assert b.images.shape == (5, 3, 112, 112) and b.images.dtype == np.float32
        assert b.poses.shape == (5, 17, 3) and b.poses.dtype == np.float32
        np.testing.assert_array_equal(np.concatenate([b.index for b in batches]), idx)
        # Centre crop, mean subtracted, divided by the scale; root-relative poses.
        raw = ds.read_images(b.index).astype(np.float32)
        expected = (raw[:, 8:120, 8:120] - _stats().mean) / _stats().scale
        np.testing.assert_allclose(b.images, expected.transpose(0, 3, 1, 2), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(b.poses, root_relative(ds.poses(b.index)), atol=1e-3)
        # Test batches are the same every epoch.
        np.testing.assert_array_equal(next(loader.epoch(3)).images, b.images)


def test_training_batches_are_random_crops_with_colour_noise(tiny_path):
    with PoseDataset(tiny_path) as ds:
        idx = ds.select()
        stats = _stats()
        loader = BatchLoader(ds, idx, 8, train=True, stats=stats, crop=100, noise_std=0.1, seed=3)
        assert loader.n_batches == 48 // 8
        b = next(loader.epoch(0))
        assert b.images.shape == (8, 3, 100, 100)
        raw = ds.read_images(b.index).astype(np.float32)
        for i in range(8):
            x = b.images[i].transpose(1, 2, 0) * stats.scale + stats.mean
            # Find the crop offset: the image minus its constant colour shift is a window of raw.
            hits = [(oy, ox) for oy in range(29) for ox in range(29)
                    if np.allclose(np.ptp(x[:6, :6] - raw[i, oy:oy + 6, ox:ox + 6], axis=(0, 1)), 0, atol=1e-2)]
            assert len(hits) == 1
            oy, ox = hits[0]
            assert np.allclose(np.ptp(x - raw[i, oy:oy + 100, ox:ox + 100], axis=(0, 1)), 0, atol=1e-2)
            shift = (x - raw[i, oy:oy + 100, ox:ox + 100]).mean(axis=(0, 1))
            assert 0 < np.abs(shift).max() < 3 * 0.1 * np.sqrt(stats.eigval.max()) * 3


def test_loader_epochs_shuffle_and_resume_exactly(tiny_path):
    with PoseDataset(tiny_path) as ds:
        idx = ds.select()

        def make():
            return BatchLoader(ds, idx, 6, train=True, stats=_stats(), seed=11)

        loader = make()
        epoch0 = list(loader.epoch(0))
        epoch1 = list(loader.epoch(1))
        assert len(epoch0) == 8
        order0 = np.concatenate([b.index for b in epoch0])
        assert sorted(order0) == list(idx)                        # a permutation, no repeats
        assert not np.array_equal(order0, np.concatenate([b.index for b in epoch1]))
        # A fresh loader resumed at (1, 5) serves exactly the rest of the uninterrupted epoch 1.
        resumed = list(make().epoch(1, start_batch=5))
        assert len(resumed) == 3
        for a, b in zip(epoch1[5:], resumed):
            np.testing.assert_array_equal(a.index, b.index)
            np.testing.assert_array_equal(a.images, b.images)
            np.testing.assert_array_equal(a.poses, b.poses)
        # A different seed gives different batches.
        other = next(BatchLoader(ds, idx, 6, train=True, stats=_stats(), seed=12).epoch(0))
        assert not np.array_equal(other.index, epoch0[0].index)


def test_loader_reads_from_file_like_preloaded(tiny_path):
    with PoseDataset(tiny_path) as ds:
        idx = ds.select(actions="Walking")
        a = BatchLoader(ds, idx, 4, train=True, stats=_stats(), seed=5, preload=True)
        b = BatchLoader(ds, idx, 4, train=True, stats=_stats(), seed=5, preload="auto", max_preload_bytes=0)
        assert a.images is not None and b.images is None
        for x, y in zip(a.epoch(2), b.epoch(2)):
            np.testing.assert_array_equal(x.images, y.images)


def test_downsample_is_box_average(tiny_path):
    img = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    small = downsample_images(img, 2)
    assert small.shape == (2, 2, 2, 3)
    np.testing.assert_allclose(small[1, 0, 1], img[1, 0:2, 2:4].reshape(-1, 3).mean(axis=0))
    with PoseDataset(tiny_path) as ds:
        loader = BatchLoader(ds, ds.select(), 4, train=False, stats=_stats(), downsample=2, crop=56)
        b = next(loader.epoch(0))
        assert b.images.shape == (4, 3, 56, 56)
        raw = downsample_images(ds.read_images(b.index), 2)[:, 4:60, 4:60]
        np.testing.assert_allclose(b.images, ((raw - _stats().mean) / _stats().scale).transpose(0, 3, 1, 2),
                                   atol=1e-4)
        with pytest.raises(ValueError, match="crop 112 does not fit in the 64x64"):
            BatchLoader(ds, ds.select(), 4, train=False, stats=_stats(), downsample=2)
        with pytest.raises(ValueError, match="downsample must divide"):
            BatchLoader(ds, ds.select(), 4, train=False, stats=_stats(), downsample=3, crop=10)
        with pytest.raises(ValueError, match="make no full batch"):
            BatchLoader(ds, ds.select()[:3], 4, train=True, stats=_stats())


def test_batch_joints2d_follow_the_random_crop(tiny_path):
    ds = PoseDataset(tiny_path)
    idx = ds.select()
    stats = ImageStats.compute(ds, idx)
    loader = BatchLoader(ds, idx, 8, train=True, stats=stats, crop=48, downsample=2, noise_std=0.0, seed=3)
    batch = loader.make_batch(0, 0)
    full = ds.crop_joints(batch.index) / 2
    offset = full - batch.joints2d                      # (B, 17, 2): the crop corner (ox, oy)
    assert np.allclose(offset, offset[:, :1], atol=1e-4)  # the same shift for every joint
    corner = np.rint(offset[:, 0]).astype(int)
    assert np.allclose(offset[:, 0], corner, atol=1e-4) and (corner >= 0).all() and (corner <= 64 - 48).all()
    images = downsample_images(ds.read_images(batch.index), 2)
    for i, (ox, oy) in enumerate(corner):               # the pixels come from that same corner
        expected = (images[i, oy:oy + 48, ox:ox + 48] - stats.mean) / stats.scale
        np.testing.assert_allclose(batch.images[i].transpose(1, 2, 0), expected, atol=1e-4)
    test = BatchLoader(ds, idx, 8, train=False, stats=stats, crop=48, downsample=2).make_batch(0, 0)
    np.testing.assert_allclose(test.joints2d, ds.crop_joints(test.index) / 2 - 8, atol=1e-4)

import numpy as np
import pytest

from data.dataset import PoseDataset, root_relative
from data.imagestats import ImageStats
from data.loader import BatchLoader, downsample_images


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


def test_batches_are_written_where_the_allocator_says(tiny_path):
    made = []

    def allocate(shape, dtype):
        made.append(np.empty(shape, dtype))
        return made[-1]

    with PoseDataset(tiny_path) as ds:
        plain = BatchLoader(ds, ds.select(), 8, train=True, stats=_stats(), seed=3).make_batch(0, 1)
        b = BatchLoader(ds, ds.select(), 8, train=True, stats=_stats(), seed=3, allocate=allocate).make_batch(0, 1)
    assert len(made) == 1 and b.images is made[0]
    np.testing.assert_array_equal(b.images, plain.images)

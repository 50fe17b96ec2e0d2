"""The threaded mini-batch loader: (image, root-relative pose) batches with the paper's augmentation.

Conventions: poses are served root-relative (joint 0 subtracted); images as float32 NCHW,
mean-subtracted and divided by one scalar pixel scale (data.imagestats.ImageStats).
"""
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from data.dataset import root_relative

Batch = namedtuple("Batch", ["images", "poses", "index", "joints2d"])
Batch.__doc__ = """images float32 (B,3,crop,crop) NCHW; poses float32 (B,17,3) root-relative mm;
index int64 (B,) file rows; joints2d float32 (B,17,2) the joints' (x, y) in the served crop's
pixels (for the joint-detection task of the pre-training)."""


def downsample_images(images, factor):
    """Box-average (B,S,S,C) images by an integer factor -> (B,S/factor,S/factor,C) float32."""
    images = np.asarray(images, dtype=np.float32)
    if factor == 1:
        return images
    b, s, _, c = images.shape
    if s % factor:
        raise ValueError(f"image size {s} is not divisible by downsample factor {factor}")
    return images.reshape(b, s // factor, factor, s // factor, factor, c).mean(axis=(2, 4))


def centre_offset(size, crop):
    """The corner of the centred crop x crop window of a size x size image (the test-mode crop)."""
    return (size - crop) // 2


def crop_normalise(images, oy, ox, crop, shift, stats):
    """crop x crop windows at (oy, ox) (n,) of float32 images (n,S,S,3), plus the colour shift (n,3)
    minus stats.mean, divided by stats.scale -> float32 (n,crop,crop,3)."""
    n = len(images)
    out = np.empty((n, crop, crop, 3), dtype=np.float32)
    for i in range(n):
        out[i] = images[i, oy[i]:oy[i] + crop, ox[i]:ox[i] + crop]
    out += (shift - stats.mean).astype(np.float32)[:, None, None, :]
    out *= np.float32(1.0 / stats.scale)
    return out


def eval_images(images, stats, crop, downsample):
    """The test-mode preprocessing of uint8 (n,S,S,3) crops, as the loader serves them with
    train=False: box-downsampled, centre crop, no colour noise, normalised -> float32 (n,3,crop,crop)."""
    images = downsample_images(images, downsample)
    n = len(images)
    o = np.full(n, centre_offset(images.shape[1], crop))
    return np.ascontiguousarray(crop_normalise(images, o, o, crop, np.zeros((n, 3)), stats).transpose(0, 3, 1, 2))


class BatchLoader:
    """Mini-batches of (image, root-relative pose) with the paper's augmentation.

    BatchLoader(dataset, idx, batch_size, train=..., stats=ImageStats, crop=112, downsample=1,
                noise_std=0.1, seed=0, preload="auto", allocate=np.empty)
    Training: random crop x crop window of the (box-downsampled) image, PCA colour noise
    (ImageStats.color_noise, alpha ~ N(0, noise_std)), minus the mean, divided by stats.scale;
    shuffled each epoch by default_rng([seed, epoch]), augmentation by default_rng([seed, epoch, b]),
    so resuming at (epoch, start_batch) reproduces an uninterrupted run exactly; the last partial
    batch is dropped. Test: centre crop, no noise, file order, the last partial batch kept.
    Images are preloaded when they fit in `max_preload_bytes` (preload="auto"), otherwise read from
    the file per batch; a background thread prepares the next batch either way, so on the GPU the
    host's batching overlaps the device's work. allocate(shape, dtype) makes the host array the
    NCHW images are written to: numpy.empty, or on the GPU a page-locked one (the trainer passes
    nn.backend.empty_pinned), so that their copy to the device is a DMA.
    rows=(lo, hi) (training, data-parallel): serve only positions lo..hi-1 of every batch; the
    augmentation is drawn for the whole batch and sliced, so these rows equal those of a loader
    without `rows`.
    """

    def __init__(self, dataset, idx, batch_size, *, train, stats, crop=112, downsample=1,
                 noise_std=0.1, seed=0, preload="auto", max_preload_bytes=2 << 30, allocate=np.empty, rows=None):
        self.dataset = dataset
        self.rows = None if rows is None else slice(int(rows[0]), int(rows[1]))
        self.allocate = allocate
        self.idx = np.asarray(idx, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.train = bool(train)
        self.stats = stats
        self.crop = int(crop)
        self.downsample = int(downsample)
        self.noise_std = float(noise_std)
        self.seed = int(seed)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if self.downsample < 1 or dataset.image_size % self.downsample:
            raise ValueError(f"downsample must divide the image size {dataset.image_size}, got {downsample}")
        self.size = dataset.image_size // self.downsample
        if not 1 <= self.crop <= self.size:
            raise ValueError(f"crop {crop} does not fit in the {self.size}x{self.size} "
                             f"(downsampled by {self.downsample}) images")
        if len(self.idx) == 0:
            raise ValueError("BatchLoader: empty selection")
        if self.train and len(self.idx) < self.batch_size:
            raise ValueError(f"BatchLoader: {len(self.idx)} training rows make no full batch of {batch_size}")
        self.poses = root_relative(dataset.poses(self.idx)).astype(np.float32)
        self.joints2d = dataset.crop_joints(self.idx) / np.float32(self.downsample)
        s = dataset.image_size
        nbytes = len(self.idx) * s * s * 3
        if preload == "auto":
            preload = nbytes <= max_preload_bytes
        self.images = dataset.read_images(self.idx) if preload else None

    @property
    def n_batches(self):
        if self.train:
            return len(self.idx) // self.batch_size
        return -(-len(self.idx) // self.batch_size)

    def order(self, epoch):
        """Positions into idx in the order served in `epoch`."""
        if not self.train:
            return np.arange(len(self.idx))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.idx))

    def _images(self, positions):
        if self.images is not None:
            return self.images[positions]
        return self.dataset.read_images(self.idx[positions])

    def make_batch(self, epoch, b, order=None):
        """Batch b of `epoch` (a pure function of seed, epoch and b)."""
        order = self.order(epoch) if order is None else order
        positions = order[b * self.batch_size:(b + 1) * self.batch_size]
        n, c = len(positions), self.crop
        if self.train:
            rng = np.random.default_rng([self.seed, epoch, b])
            oy = rng.integers(0, self.size - c + 1, size=n)
            ox = rng.integers(0, self.size - c + 1, size=n)
            shift = self.stats.color_noise(rng.normal(0.0, self.noise_std, size=(n, 3)))
            if self.rows is not None:   # this process's rows of the batch, with the batch's draws
                positions, oy, ox, shift = (a[self.rows] for a in (positions, oy, ox, shift))
                n = len(positions)
        else:
            oy = ox = np.full(n, centre_offset(self.size, c))
            shift = np.zeros((n, 3))
        images = downsample_images(self._images(positions), self.downsample)
        out = crop_normalise(images, oy, ox, c, shift, self.stats)
        joints2d = self.joints2d[positions] - np.stack([ox, oy], axis=1)[:, None, :].astype(np.float32)
        nchw = self.allocate((n, 3, c, c), np.float32)
        nchw[...] = out.transpose(0, 3, 1, 2)
        return Batch(nchw, self.poses[positions].copy(),
                     self.idx[positions].copy(), joints2d)

    def epoch(self, epoch, start_batch=0):
        """Iterator over the batches start_batch..n_batches-1 of `epoch`."""
        order = self.order(epoch)
        if not 0 <= start_batch <= self.n_batches:
            raise ValueError(f"start_batch {start_batch} outside [0, {self.n_batches}]")
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = None
            for b in range(start_batch, self.n_batches):
                current = pending.result() if pending is not None else self.make_batch(epoch, b, order)
                # Prepare the next batch while the caller trains on this one.
                pending = pool.submit(self.make_batch, epoch, b + 1, order) \
                    if b + 1 < self.n_batches else None
                yield current

"""Reference baselines on a dataset file: what a trained network has to beat.

    python -m data.baselines --data FILE.h5 [--size 16] [--train S1,...] [--test S9,S11]

* mean pose: every test image gets the mean root-relative training pose (camera coordinates);
* nearest neighbour: every test image gets the root-relative pose of the training image closest
  to it in a small pixel space: the 128x128 image box-averaged to size x size (16 by default),
  each image's vector centred and scaled to unit norm (so brightness and contrast do not count),
  compared by Euclidean distance;
* ridge on gradient histograms: a linear regression (ridge, lambda 10) from HOG-like features
  (8 orientation bins of the grey-level gradient in 4x4-pixel cells of the 32x32 image, the
  vector L2-normalised, square-rooted) to the 51 pose coordinates: a hand-crafted-feature
  baseline that shows how much pose information simple image statistics already carry;
* bank floor: every test image gets the training-bank pose nearest to its own truth (an oracle,
  data.metrics.nearest_pose): the best any retrieval from the pose bank could do.

Also printed: the density of the bank (Algorithm 1's pose space Y), as the share of `--density-n`
random training images that have another training-bank pose within 30 mm, first counting every
other entry, then only entries of other sequences (another subject, action or sub-action).

MPJPE (data.metrics.mpjpe) on root-relative poses, 17 joints, mm; reported per action and
averaged both over all test frames and over actions.
"""
import argparse
import sys

import numpy as np

from data import flags, h36m
from data.dataset import IMAGE_SIZE, DatasetError, PoseDataset, root_relative
from data.loader import downsample_images
from data.metrics import mpjpe, nearest_pose


def image_features(dataset, idx, size=16, chunk=1024):
    """(n, size*size*3) float32: box-downsampled images, each centred and scaled to unit norm."""
    factor = dataset.image_size // size
    if factor * size != dataset.image_size:
        raise ValueError(f"size {size} must divide the image size {dataset.image_size}")
    out = np.empty((len(idx), size * size * 3), dtype=np.float32)
    for lo in range(0, len(idx), chunk):
        x = downsample_images(dataset.read_images(idx[lo:lo + chunk]), factor).reshape(-1, size * size * 3)
        x -= x.mean(axis=1, keepdims=True)
        out[lo:lo + chunk] = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
    return out


def gradient_histograms(dataset, idx, size=32, cell=4, bins=8, chunk=1024):
    """(n, (size/cell)^2 * bins) float32 HOG-like features of the grey-level images."""
    cells = size // cell
    out = np.empty((len(idx), cells * cells * bins), dtype=np.float32)
    for lo in range(0, len(idx), chunk):
        grey = downsample_images(dataset.read_images(idx[lo:lo + chunk]), dataset.image_size // size).mean(axis=-1)
        gy, gx = np.gradient(grey, axis=(1, 2))
        magnitude = np.hypot(gx, gy)
        # Unsigned orientation: a dark limb on a light wall and the reverse look alike.
        which = (np.arctan2(gy, gx) % np.pi / np.pi * bins).astype(int) % bins
        h = np.stack([(magnitude * (which == b)).reshape(-1, cells, cell, cells, cell).sum(axis=(2, 4))
                      for b in range(bins)], axis=-1).reshape(len(grey), -1)
        out[lo:lo + chunk] = np.sqrt(h / (np.linalg.norm(h, axis=1, keepdims=True) + 1e-6))
    return out


def ridge(x_train, y_train, lam=10.0):
    """Weights (d, k) and offset (k,) of ridge regression y = x W + b (b the mean of y_train)."""
    b = y_train.mean(axis=0)
    W = np.linalg.solve(x_train.T @ x_train + lam * np.eye(x_train.shape[1]), x_train.T @ (y_train - b))
    return W, b


def nearest_neighbours(query, reference, chunk=2048):
    """Index (n,) of the nearest row of reference (m,d) for each row of query (n,d), Euclidean."""
    ref_sq = np.einsum("ij,ij->i", reference, reference)
    out = np.empty(len(query), dtype=np.int64)
    for lo in range(0, len(query), chunk):
        q = query[lo:lo + chunk]
        # |q - r|^2 = |q|^2 - 2 q.r + |r|^2; |q|^2 does not change the argmin.
        out[lo:lo + chunk] = np.argmin(ref_sq[None, :] - 2.0 * q @ reference.T, axis=1)
    return out


def run(path, train=h36m.TRAIN_SUBJECTS, test=h36m.TEST_SUBJECTS, size=16):
    """Per-frame errors (dict name -> (n_test,) mm) and the test metadata."""
    with PoseDataset(path) as ds:
        tr, te = ds.select(subjects=train), ds.select(subjects=test)
        y_train, y_test = root_relative(ds.poses(tr)), root_relative(ds.poses(te))
        errors = {"mean pose": mpjpe(np.broadcast_to(y_train.mean(axis=0), y_test.shape), y_test)}
        nn = nearest_neighbours(image_features(ds, te, size), image_features(ds, tr, size))
        errors[f"nearest neighbour ({size}x{size})"] = mpjpe(y_train[nn], y_test)
        W, b = ridge(gradient_histograms(ds, tr).astype(np.float64), y_train.reshape(len(tr), h36m.POSE_DIM))
        pred = gradient_histograms(ds, te) @ W + b
        errors["ridge on gradient histograms"] = mpjpe(pred.reshape(-1, h36m.N_JOINTS, 3), y_test)
        bank = root_relative(ds.bank_poses(ds.bank_select(subjects=train)))
        errors["bank floor"] = nearest_pose(bank, y_test)[0].astype(np.float64)
        return errors, ds.metadata(te)


def bank_density(path, train=h36m.TRAIN_SUBJECTS, n=400, within=30.0, seed=0):
    """(share, share from other sequences, n used): of n random training images (seed), the share
    with another training-bank pose within `within` mm (root-relative MPJPE); the second share
    ignores bank entries of the image's own sequence (same subject, action and sub-action)."""
    with PoseDataset(path) as ds:
        bidx = ds.bank_select(subjects=train)
        rows = ds.bank_image_rows(bidx)
        with_image = np.flatnonzero(rows >= 0)
        pick = np.sort(np.random.default_rng(seed).choice(with_image, min(n, len(with_image)), replace=False))
        bank = root_relative(ds.bank_poses(bidx))                        # (M, 17, 3)
        meta = ds.bank_metadata(bidx)
    sequence = np.stack([np.unique(meta[k], return_inverse=True)[1] for k in ("subject", "action", "subaction")])
    near = np.zeros(len(pick), bool)
    near_other = np.zeros(len(pick), bool)
    for i, b in enumerate(pick):
        d = mpjpe(bank, np.broadcast_to(bank[b], bank.shape))
        d[b] = np.inf
        near[i] = d.min() <= within
        other = (sequence != sequence[:, b:b + 1]).any(axis=0)
        near_other[i] = d[other].min() <= within if other.any() else False
    return near.mean(), near_other.mean(), len(pick)


def report(errors, meta):
    """Text table: per action, then the average over frames and over actions."""
    actions = [a for a in h36m.ACTIONS if a in set(meta["action"])]
    names = list(errors)
    lines = ["| action | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    per_action = {n: [errors[n][meta["action"] == a].mean() for a in actions] for n in names}
    for i, a in enumerate(actions):
        lines.append(f"| {a} | " + " | ".join(f"{per_action[n][i]:.1f}" for n in names) + " |")
    lines.append("| average over frames | " + " | ".join(f"{errors[n].mean():.1f}" for n in names) + " |")
    lines.append("| average over actions | " + " | ".join(f"{np.mean(per_action[n]):.1f}" for n in names) + " |")
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m data.baselines", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="dataset file (.h5)")
    parser.add_argument("--train", default="train", help="training subjects (default S1,S5,S6,S7,S8)")
    parser.add_argument("--test", default="test", help="test subjects (default S9,S11)")
    parser.add_argument("--size", type=flags.positive_int, default=16,
                        help="side of the nearest-neighbour pixel space (default 16)")
    parser.add_argument("--density-n", type=flags.non_negative_int, default=400, metavar="N",
                        help="training images drawn for the bank density (default 400; 0: skip)")
    return parser


def parse_args(argv=None):
    """The checked arguments; a bad one exits with argparse's usage error (status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if IMAGE_SIZE % args.size:
        parser.error(f"--size must divide {IMAGE_SIZE}")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        errors, meta = run(args.data, args.train, args.test, args.size)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"MPJPE (mm, root-relative, 17 joints) on {args.test} of {args.data}, {len(meta['action'])} frames")
    print(report(errors, meta))
    if args.density_n:
        share, other, n = bank_density(args.data, args.train, args.density_n)
        print(f"bank density: {share:.1%} of {n} training images have another training-bank pose within 30 mm; "
              f"{other:.1%} counting only other sequences")
    return 0


if __name__ == "__main__":
    sys.exit(main())

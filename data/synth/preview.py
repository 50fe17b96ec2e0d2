"""A picture of the synthetic data: samples with their projected ground-truth skeletons."""
import numpy as np

from data import h36m
from data.dataset import IMAGE_SIZE, PoseDataset
from data.files import save_figure
from data.synth.generator import FRAMES_PER_SEQUENCE, render_sequence


def preview(png_path, data=None, seed=0, n_rows=5, n_cols=9, rooms="lab"):
    """Write a grid of samples with their projected ground-truth skeletons (left blue, right red).

    data: a dataset file to sample from; None renders fresh samples (one per action, varied
    subjects and cameras, in the `rooms` setting) without writing a dataset.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = n_rows * n_cols
    rng = np.random.default_rng(seed)
    if data is not None:
        with PoseDataset(data) as ds:
            idx = np.sort(rng.choice(ds.n, size=min(n, ds.n), replace=False))
            images, poses = ds.read_images(idx), ds.poses(idx)
            meta = ds.metadata(idx)
            boxes = ds.boxes(idx)
            labels = [f"{s} {a} {c[:2]}" for s, a, c in zip(meta["subject"], meta["action"], meta["camera"])]
            cams = meta["camera"]
    else:
        images, poses, boxes, cams, labels = [], [], [], [], []
        for k in range(n):
            subject = h36m.ALL_SUBJECTS[k % len(h36m.ALL_SUBJECTS)]
            action = h36m.ACTIONS[k % len(h36m.ACTIONS)]
            r = render_sequence(subject, action, 1 + k % 2, seed, 1.0 / FRAMES_PER_SEQUENCE, rooms)
            j = rng.integers(len(r["images"]))
            images.append(r["images"][j])
            poses.append(r["poses"][j])
            boxes.append(r["box"][j])
            cams.append(r["camera"][j])
            labels.append(f"{subject} {action} {r['camera'][j][:2]}")
        images, poses, boxes = np.array(images), np.array(poses), np.array(boxes)
    uv = [h36m.project_to_crop(p[None], c, b[None], IMAGE_SIZE)[0] for p, c, b in zip(poses, cams, boxes)]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * 2.0, n_rows * 2.15))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, p, label in zip(axes.ravel(), images, uv, labels):
        ax.imshow(image, extent=(0, IMAGE_SIZE, IMAGE_SIZE, 0))
        for j, parent in enumerate(h36m.PARENTS):
            if parent < 0:
                continue
            colour = "tab:blue" if j in h36m.LEFT_JOINTS else "tab:red" if j in h36m.RIGHT_JOINTS else "w"
            ax.plot(p[[j, parent], 0], p[[j, parent], 1], "-", color=colour, lw=1.0, alpha=0.8)
        ax.set_title(label, fontsize=6.5)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.97, bottom=0.01, wspace=0.04, hspace=0.18)
    return save_figure(fig, png_path, dpi=100)

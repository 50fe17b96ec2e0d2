"""Figures of the evaluation (matplotlib, Agg backend; every function writes one PNG).

figure3         error versus A (as a share of the bank) for StructNet-Avg(A) (the paper's Figure 3)
figure4         the learned embedding (Figure 4): (a) the two highest-variance dimensions of the
                image embedding over training images with the average image of each local region,
                (b) the same two dimensions of the pose embedding with the average pose of each
                region, (c), (d) the same on the first two principal components
skeleton_figure predicted versus ground-truth skeletons for a few test images
prediction_figure one image of run_predict: its crop beside front and side views of its predictions
best_of_figure  best-of-k MPJPE over StructNet's k top-scoring bank poses against k
learning_curves the --eval-every records of structlearn.curves against max-margin epochs

Pose drawings use the paper's colours: right arm red, right leg orange, left arm purple, left
leg green, and a cyan "nose" pointing in the person's forward direction. Poses are root-relative
camera coordinates (x right, y down, z away from the camera); the front view is what the camera
sees (x, -y), the side view (z, -y).
"""
import numpy as np

from data import h36m
from data.files import save_figure

import matplotlib  # noqa: E402  (the backend must be chosen before pyplot is imported)
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

J = {name: j for j, name in enumerate(h36m.JOINT_NAMES)}
LIMB_COLOURS = {"rarm": "#d62728", "rleg": "#ff7f0e", "larm": "#9467bd", "lleg": "#2ca02c",
                "torso": "#444444", "nose": "#17becf"}


def limb(j):
    """'rarm', 'rleg', 'larm', 'lleg' or 'torso': the side from h36m.RIGHT_JOINTS / LEFT_JOINTS; an
    arm when the joint's chain of parents reaches the thorax before the root."""
    side = "r" if j in h36m.RIGHT_JOINTS else "l" if j in h36m.LEFT_JOINTS else ""
    if not side:
        return "torso"
    while j not in (J["Thorax"], h36m.ROOT):
        j = h36m.PARENTS[j]
    return side + ("arm" if j == J["Thorax"] else "leg")


def bone_colour(j):
    """Colour of the bone from joint j to its parent."""
    return LIMB_COLOURS[limb(j)]


def forward_direction(pose):
    """Unit forward direction (3,) of a pose (17,3): up x right, with right = (RShoulder - LShoulder)
    + (RHip - LHip) and up = Thorax - Hip (data.skeleton's body frame: x right, y forward, z up)."""
    right = (pose[J["RShoulder"]] - pose[J["LShoulder"]]) + (pose[J["RHip"]] - pose[J["LHip"]])
    up = pose[J["Thorax"]] - pose[J["Hip"]]
    f = np.cross(up, right)
    n = np.linalg.norm(f)
    return f / n if n > 0 else f


def front_view(pose):
    """(17,3) camera coordinates -> (17,2) as seen by the camera, y up: (x, -y)."""
    return np.stack([pose[:, 0], -pose[:, 1]], axis=1)


def side_view(pose):
    """(17,3) -> (17,2) seen from the camera's right: (z, -y) (depth to the right, up)."""
    return np.stack([pose[:, 2], -pose[:, 1]], axis=1)


def draw_pose(ax, pose, view=front_view, centre=(0.0, 0.0), scale=1.0, lw=1.5, colour=None, ls="-",
              nose=True, alpha=1.0, zorder=3, label=None):
    """Draw a 3-D pose (17,3) in a 2-D view at centre with scale (data units per mm).

    colour None: the limb colours; else one colour for every bone. nose: a cyan segment from the
    Neck/Nose joint along the forward direction, 0.6 times the thorax-head distance long.
    """
    pose = np.asarray(pose, dtype=np.float64)
    p2 = view(pose) * np.asarray(scale) + np.asarray(centre)
    for j, parent in enumerate(h36m.PARENTS):
        if parent < 0:
            continue
        ax.plot(p2[[j, parent], 0], p2[[j, parent], 1], ls, color=colour or bone_colour(j), lw=lw,
                alpha=alpha, zorder=zorder, solid_capstyle="round", label=label if j == 1 else None)
    if nose:
        neck = pose[J["Neck/Nose"]]
        tip = neck + 0.6 * np.linalg.norm(pose[J["Head"]] - pose[J["Thorax"]]) * forward_direction(pose)
        seg = view(np.stack([neck, tip])) * np.asarray(scale) + np.asarray(centre)
        ax.plot(seg[:, 0], seg[:, 1], "-", color=LIMB_COLOURS["nose"] if colour is None else colour,
                lw=lw * 1.6, alpha=alpha, zorder=zorder + 1, solid_capstyle="round")


# ============================================================================ Figure 3
def figure3(path, sweep, bank_size, max_result=None, paper_A=None):
    """Error versus A as a share of the bank (the paper's Figure 3, whose A = 500 is ~0.5% of the
    bank): sweep {A: (mpjpe_all_frames, mpjpe_action_mean)}, bank_size M, max_result the same pair
    for StructNet-Max (drawn at A = 1), paper_A the A of the tables (marked). The x-axis is
    100 A / M in % (log); the top axis gives A."""
    A = np.array(sorted(sweep))
    share = 100.0 * A / bank_size
    frames = np.array([sweep[a][0] for a in A])
    actions = np.array([sweep[a][1] for a in A])
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=120)
    ax.plot(share, frames, "o-", color="#1f77b4", label="StructNet-Avg(A), mean over frames")
    ax.plot(share, actions, "s--", color="#ff7f0e", label="StructNet-Avg(A), mean over actions")
    if max_result is not None:
        ax.plot([100.0 / bank_size], [max_result[0]], "k*", ms=11, label="StructNet-Max (A = 1), over frames")
    for x, v in zip(share, frames):
        ax.annotate(f"{v:.1f}", (x, v), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    if paper_A is not None:
        x = 100.0 * paper_A / bank_size
        ax.axvline(x, color="0.6", lw=1, ls=":")
        ax.annotate(f"A = {paper_A}", (x, ax.get_ylim()[1]), textcoords="offset points", xytext=(3, -12),
                    fontsize=8, color="0.4")
    ax.set_xscale("log")
    ax.set_xticks(share)
    ax.set_xticklabels([f"{s:.2g}" for s in share], fontsize=8)   # A rounded: 90 of 179,800 is 0.05%
    ax.minorticks_off()
    ax.margins(x=0.08, y=0.14)
    ax.set_xlabel(f"A as a share of the bank (%; bank of {bank_size} poses)")
    ax.set_ylabel("MPJPE (mm)")
    top = ax.secondary_xaxis("top", functions=(lambda s: s * bank_size / 100.0, lambda a: 100.0 * a / bank_size))
    top.set_xticks(A)
    top.set_xticklabels([str(a) for a in A], fontsize=8)
    top.minorticks_off()
    top.set_xlabel("A (top-scoring bank poses averaged)", fontsize=9)
    ax.set_title("Figure 3: pose error of StructNet-Avg(A) versus A", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


# ============================================================================ Figure 4
def _grid(xy, grid, lo=1.0, hi=99.0):
    """Cell index (N, 2) of points xy (N, 2) on a grid x grid partition of their robust range,
    and the range (x0, x1, y0, y1)."""
    x0, x1 = np.percentile(xy[:, 0], [lo, hi])
    y0, y1 = np.percentile(xy[:, 1], [lo, hi])
    pad_x, pad_y = 0.02 * (x1 - x0 or 1.0), 0.02 * (y1 - y0 or 1.0)
    x0, x1, y0, y1 = x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y
    cx = np.clip(((xy[:, 0] - x0) / (x1 - x0) * grid).astype(np.int64), 0, grid - 1)
    cy = np.clip(((xy[:, 1] - y0) / (y1 - y0) * grid).astype(np.int64), 0, grid - 1)
    return np.stack([cx, cy], axis=1), (x0, x1, y0, y1)


def _panel(ax, xy, grid, min_count, images=None, poses=None, image_mask=None, title="", labels=("", ""), ref=None):
    """Scatter of xy with, in every cell holding at least min_count points, the average image
    (of the points where image_mask is True) or the average pose of its points. ref: the typical
    magnitude of the embedding; a spread below 1e-4 of it is flagged as a collapse."""
    cells, (x0, x1, y0, y1) = _grid(xy, grid)
    ax.scatter(xy[:, 0], xy[:, 1], s=3, c="0.55", alpha=0.35, lw=0, zorder=1)
    w, h = (x1 - x0) / grid, (y1 - y0) / grid
    for i in range(grid):
        for j in range(grid):
            inside = (cells[:, 0] == i) & (cells[:, 1] == j)
            if images is not None and image_mask is not None:
                inside_img = inside & image_mask
                if inside_img.sum() < min_count:
                    inside_img = inside
            else:
                inside_img = inside
            if inside.sum() < min_count:
                continue
            cx, cy = x0 + (i + 0.5) * w, y0 + (j + 0.5) * h
            if images is not None:
                avg = images[inside_img].mean(axis=0) / 255.0
                ax.imshow(avg, extent=(cx - 0.46 * w, cx + 0.46 * w, cy - 0.46 * h, cy + 0.46 * h),
                          aspect="auto", zorder=2, interpolation="bilinear")
            if poses is not None:
                avg = poses[inside].mean(axis=0)
                v = front_view(avg)
                extent = max(np.ptp(v[:, 0]), np.ptp(v[:, 1]), 1.0)
                mid = (v.max(axis=0) + v.min(axis=0)) / 2
                scale = (0.85 * w / extent, 0.85 * h / extent)
                ax.add_patch(plt.Rectangle((cx - 0.48 * w, cy - 0.48 * h), 0.96 * w, 0.96 * h, fc="white",
                                           ec="0.8", lw=0.5, alpha=0.85, zorder=2))
                draw_pose(ax, avg, centre=(cx - mid[0] * scale[0], cy - mid[1] * scale[1]), scale=scale,
                          lw=1.3, zorder=3)
            ax.text(cx + 0.46 * w, cy - 0.46 * h, str(int(inside.sum())), fontsize=7, ha="right", va="bottom",
                    color="0.25", zorder=5)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_box_aspect(1)
    size = np.abs(xy).mean() if ref is None else ref
    if np.ptp(xy, axis=0).max() <= 1e-4 * max(size, 1e-12):
        ax.text(0.5, 0.5, f"(nearly) constant: spread {np.ptp(xy, axis=0).max():.1e}\nthe embedding has collapsed",
                transform=ax.transAxes, ha="center", va="center", fontsize=12, color="#b00000", zorder=6,
                bbox={"fc": "white", "ec": "#b00000", "alpha": 0.9})
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])


def pca_axes(x, n=2):
    """The first n principal directions (n, D) of rows x (N, D) and the mean (D,)."""
    mu = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mu, full_matrices=False)
    # a deterministic sign: the largest-magnitude component of each axis is positive
    signs = np.sign(vt[np.arange(n), np.argmax(np.abs(vt[:n]), axis=1)])
    return vt[:n] * signs[:, None], mu


def figure4(path, f_I, f_J, images, poses, image_mask=None, grid=7, min_count=3):
    """Figure 4 of the paper on training samples: f_I (N, D) image embeddings, f_J (N, D) the pose
    embeddings of their ground-truth poses, images (N, S, S, 3) uint8, poses (N, 17, 3) root-relative
    camera coordinates; image_mask (N,) bool restricts the average images to one subject (the
    paper's footnote 3).

    (a) the two dimensions of f_I of highest variance; (b) the same two dimensions of f_J;
    (c) f_I projected on its first two principal components; (d) f_J projected on the same two
    directions (image and pose share the embedding space, so the axes mean the same in both).
    """
    f_I, f_J = np.asarray(f_I, np.float64), np.asarray(f_J, np.float64)
    var = f_I.var(axis=0)
    d1, d2 = np.argsort(-var)[:2]
    axes_pc, mu = pca_axes(f_I)
    share = np.linalg.svd(f_I - mu, compute_uv=False) ** 2
    share = share / share.sum()
    fig, axs = plt.subplots(2, 2, figsize=(15, 15), dpi=100)
    ref_I, ref_J = np.linalg.norm(f_I, axis=1).mean(), np.linalg.norm(f_J, axis=1).mean()  # typical lengths
    _panel(axs[0, 0], f_I[:, [d1, d2]], grid, min_count, images=images, image_mask=image_mask,
           title=f"(a) image embedding: dimensions {d1}, {d2} (highest variance)",
           labels=(f"f_I[{d1}]", f"f_I[{d2}]"), ref=ref_I)
    _panel(axs[0, 1], f_J[:, [d1, d2]], grid, min_count, poses=poses,
           title=f"(b) pose embedding: the same dimensions {d1}, {d2}", labels=(f"f_J[{d1}]", f"f_J[{d2}]"),
           ref=ref_J)
    _panel(axs[1, 0], (f_I - mu) @ axes_pc.T, grid, min_count, images=images, image_mask=image_mask,
           title=f"(c) image embedding: principal components 1, 2 ({100 * share[0]:.0f}%, {100 * share[1]:.0f}% "
                 "of variance)", labels=("PC 1", "PC 2"), ref=ref_I)
    _panel(axs[1, 1], (f_J - mu) @ axes_pc.T, grid, min_count, poses=poses,
           title="(d) pose embedding on the same principal components", labels=("PC 1", "PC 2"), ref=ref_J)
    fig.suptitle("Figure 4: the learned image-pose embedding over training samples (grey: every sample; "
                 "insets: average image / pose of each cell, with its count)\n"
                 "poses as the camera sees them; right arm red, right leg orange, left arm purple, "
                 "left leg green, cyan: the person's forward direction", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return save_figure(fig, path)


# ============================================================================ skeletons
def skeleton_figure(path, images, joints2d, gt, preds, titles):
    """Predicted versus ground-truth skeletons: one row per test image.

    images (n, S, S, 3) uint8; joints2d {"ground truth": (n,17,2), label: (n,17,2), ...} crop pixel
    coordinates to overlay on the image (same labels as preds); gt (n,17,3) and preds
    {label: (n,17,3)} root-relative mm for the front (camera) and side views; titles (n,) str.
    """
    n = len(images)
    labels = list(preds)
    # (line style, colour in the pose plots, colour on the image) per prediction
    styles = [("--", "black", "white", "white dashed"), (":", "#1f77b4", "#7fd4ff", "light-blue dotted"),
              ("-.", "#8c564b", "#ffd27f", "yellow dash-dot")]
    height = 3.5 * n + 1.2
    fig, axs = plt.subplots(n, 3, figsize=(11, height), dpi=100, squeeze=False)
    for r in range(n):
        ax = axs[r, 0]
        size = images.shape[1]
        ax.imshow(images[r], extent=(0, size, size, 0))
        for j, parent in enumerate(h36m.PARENTS):
            if parent < 0:
                continue
            uv = joints2d["ground truth"][r]
            ax.plot(uv[[j, parent], 0], uv[[j, parent], 1], "-", color=bone_colour(j), lw=2.2)
            for k, label in enumerate(labels):
                ls, _, c, _ = styles[k % len(styles)]
                uv = joints2d[label][r]
                ax.plot(uv[[j, parent], 0], uv[[j, parent], 1], ls, color=c, lw=1.4)
        ax.set_xlim(0, size)
        ax.set_ylim(size, 0)
        ax.set_title(titles[r], fontsize=9)
        ax.axis("off")
        errs = ", ".join(f"{label.replace('StructNet-', '')} "
                         f"{np.linalg.norm(preds[label][r] - gt[r], axis=-1).mean():.0f}" for label in labels)
        for c, (view, name) in enumerate(((front_view, "front (camera) view"), (side_view, "side view, depth ->"))):
            ax = axs[r, c + 1]
            draw_pose(ax, gt[r], view=view, lw=2.4)
            for k, label in enumerate(labels):
                ls, col, _, _ = styles[k % len(styles)]
                draw_pose(ax, preds[label][r], view=view, lw=1.5, colour=col, ls=ls, nose=False)
            ax.set_aspect("equal", adjustable="datalim")
            ax.set_title(name + (f"; MPJPE (mm): {errs}" if c == 0 else ""), fontsize=9)
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize=7)
    handles = [plt.Line2D([], [], color=bone_colour(J[name]), lw=2.4)
               for name in ("RElbow", "RKnee", "LElbow", "LKnee")]
    names = ["truth: right arm", "right leg", "left arm", "left leg"]
    for k, label in enumerate(labels):
        ls, col, _, on_image = styles[k % len(styles)]
        handles.append(plt.Line2D([], [], color=col, ls=ls, lw=1.5))
        names.append(f"{label} (on the image: {on_image})")
    fig.legend(handles, names, loc="upper center", ncol=3, fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.35 / height))
    fig.suptitle("Predicted versus ground-truth skeletons (mm, root-relative; on the image the predictions "
                 "are placed at the true root)", fontsize=11, y=1 - 0.06 / height)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.9 / height))
    return save_figure(fig, path)


def prediction_figure(path, image, poses, title):
    """The crop (S, S, 3) uint8 beside front (camera) and side views of poses {label: (17, 3)}
    (root-relative mm): the first in the limb colours, the others as thin lines of their own colour."""
    others = ["black", "#1f77b4", "#8c564b", "#7f7f7f"]
    fig, axs = plt.subplots(1, 3, figsize=(11, 3.9), dpi=100)
    axs[0].imshow(image)
    axs[0].set_title(title, fontsize=9)
    axs[0].axis("off")
    labels = list(poses)
    for ax, (view, name) in zip(axs[1:], ((front_view, "front (camera) view"), (side_view, "side view, depth ->"))):
        for k, label in enumerate(labels):
            if k == 0:
                draw_pose(ax, poses[label], view=view, lw=2.4)
            else:
                draw_pose(ax, poses[label], view=view, lw=1.0, colour=others[(k - 1) % len(others)], ls="--",
                          nose=False, alpha=0.8)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(name + " (mm)", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
    handles = [plt.Line2D([], [], color=bone_colour(J["RElbow"]), lw=2.4)]
    handles += [plt.Line2D([], [], color=others[(k - 1) % len(others)], ls="--", lw=1.0) for k in range(1, len(labels))]
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return save_figure(fig, path)


# ============================================================================ best-of-k
def best_of_figure(path, best_of, floor=None, refs=None):
    """Best-of-k MPJPE against k (log): best_of the JSON's context.best_of ({"k",
    "mpjpe_all_frames", "mpjpe_action_mean"} per k), floor the bank floor (the limit as k reaches
    the bank), refs {label: MPJPE} horizontal references (StructNet-Max, Avg(A))."""
    k = np.array([b["k"] for b in best_of])
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    ax.plot(k, [b["mpjpe_all_frames"] for b in best_of], "o-", color="#1f77b4", label="best of k, mean over frames")
    ax.plot(k, [b["mpjpe_action_mean"] for b in best_of], "s--", color="#ff7f0e",
            label="best of k, mean over actions")
    if floor is not None:
        ax.axhline(floor, color="k", ls="--", lw=1, label="bank floor (nearest bank pose)")
    for (label, value), ls in zip((refs or {}).items(), (":", "-.", (0, (1, 3)))):
        ax.axhline(value, color="0.5", ls=ls, lw=1, label=label)
    ax.set_xscale("log")
    ax.set_xticks(k)
    ax.set_xticklabels([str(v) for v in k])
    ax.minorticks_off()
    ax.set_xlabel("k (top-scoring bank poses considered)")
    ax.set_ylabel("MPJPE (mm) of the best of them")
    ax.set_title("Multiple hypotheses: best-of-k MPJPE over StructNet's ranking", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


# ============================================================================ learning curves
def learning_curves(path, records):
    """Learning curves of Algorithm 1 (structlearn.curves records, one per evaluation): left, the
    training-set alignment statistic of Sec. 6 (share within 30 mm, and the median error on a
    second axis); right, test MPJPE of StructNet-Max, Avg(A) and Pred, with the bank floor and the
    mean pose as dashed references. x: max-margin epochs done."""
    records = sorted(records, key=lambda r: r["epoch"])
    ep = np.array([r["epoch"] for r in records])
    tested = [r for r in records if r["test"]]
    fig, axs = plt.subplots(1, 2 if tested else 1, figsize=(12 if tested else 6.4, 4.4), dpi=110, squeeze=False)
    ax = axs[0, 0]
    ax.plot(ep, [100 * r["train"]["share_30mm"] for r in records], "o-", color="#2ca02c", label="within 30 mm (%)")
    ax.set_xlabel("max-margin epochs")
    ax.set_ylabel("training images within 30 mm of the truth (%)", color="#2ca02c")
    ax2 = ax.twinx()
    ax2.plot(ep, [r["train"]["median_mm"] for r in records], "s--", color="#7f7f7f", label="median (mm)")
    ax2.set_ylabel("median MPJPE of the max-score pose (mm)", color="#7f7f7f")
    n = records[-1]["train"]["images"]
    ax.set_title(f"training-set alignment (Sec. 6) on {n} training images", fontsize=10)
    ax.grid(True, alpha=0.3)
    if tested:
        ax = axs[0, 1]
        et = np.array([r["epoch"] for r in tested])
        te = tested[-1]["test"]
        for key, label, style in (("max", "StructNet-Max", "o-"), ("avg", f"StructNet-Avg({te['A']})", "s-"),
                                  ("pred", "StructNet-Pred", "^-")):
            ax.plot(et, [r["test"][key] for r in tested], style, label=label)
        ax.axhline(te["bank_floor"], color="k", ls="--", lw=1, label="bank floor (nearest bank pose)")
        ax.axhline(te["mean_pose"], color="0.5", ls=":", lw=1, label="mean training pose")
        ax.set_xlabel("max-margin epochs")
        ax.set_ylabel("MPJPE (mm)")
        ax.set_title(f"test MPJPE on {te['images']} images of {','.join(te['subjects'])}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    for a in axs[0]:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))   # epochs
        a.set_xlim(-0.3, max(int(ep.max()), 1) + 0.3)
    fig.suptitle("Learning curves of Algorithm 1 (--eval-every)", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)

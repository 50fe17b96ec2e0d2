#!/usr/bin/env python
"""Render a BVH file of apf/bvh.py as a strip of skeletons, front view above and side view below
(docs/figures/bvh_sequence.jpg). The file is read with pybvh (the test extra) and drawn from
pybvh's forward kinematics, not from the poses it was written from.

    python docs/render_bvh.py bvh/S9_Walking_1_54138969.bvh docs/figures/bvh_sequence.jpg
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pybvh  # noqa: E402

from data.files import save_figure  # noqa: E402

COLOURS = {"L": "tab:blue", "R": "tab:red", "": "0.35"}


def side(node):
    name = node.parent.name if node.is_end_site() else node.name
    return name[0] if name[0] in "LR" and name[1:2].isupper() else ""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bvh", help="a BVH file")
    p.add_argument("out", help="the picture (.jpg, .png)")
    p.add_argument("--frames", type=int, default=12, help="frames drawn, evenly spaced (default: %(default)s)")
    args = p.parse_args(argv)
    b = pybvh.read_bvh_file(args.bvh, world_up="+y")
    pos = b.node_positions()                                   # (F, nodes, 3), X right, Y up, Z toward the camera
    index = {id(n): i for i, n in enumerate(b.nodes)}
    bones = [(index[id(n.parent)], index[id(n)], COLOURS[side(n)]) for n in b.nodes if n.parent is not None]
    frames = np.unique(np.linspace(0, b.frame_count - 1, min(args.frames, b.frame_count)).round().astype(int))
    step = 900.0
    lo, hi = -1000.0, 1100.0
    row_in = 1.8
    fig, axes = plt.subplots(2, 1, figsize=(row_in * len(frames) * step / (hi - lo) + 0.4, 2 * row_in + 0.5), dpi=110)
    for row, (ax, (h, label)) in enumerate(zip(axes, ((0, "camera view (X, Y)"), (2, "side (Z, Y)")))):
        for k, f in enumerate(frames):
            P = pos[f] - pos[f, 0] * [1, 0, 1]                 # root over the origin, height kept
            for a, c, colour in bones:
                ax.plot([P[a, h] + k * step, P[c, h] + k * step], [P[a, 1], P[c, 1]], color=colour, lw=1.8,
                        solid_capstyle="round")
            if row == 0:
                ax.text(k * step, hi - 80, f"{f * b.frame_time:.1f} s", ha="center", fontsize=7)
        ax.set_aspect("equal")
        ax.set_xlim(-step / 2, (len(frames) - 0.5) * step)
        ax.set_ylim(lo, hi)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, fontsize=8)
        for s in ax.spines.values():
            s.set_visible(False)
    fig.suptitle(f"{os.path.basename(args.bvh)}: {b.frame_count} frames, frame time {b.frame_time:.3g} s "
                 "(read with pybvh; left side blue, right red)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, args.out, pil_kwargs={"quality": 85} if args.out.lower().endswith((".jpg", ".jpeg")) else {})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

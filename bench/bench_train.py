"""Training-phase benchmark at the paper's sizes (batch 128, 112x112 inputs, preset "paper").

Times one mini-batch of each phase of training, median of --reps, and its ratio to the GEMM
floor (the phase's multiply-add FLOPs / the float32 GEMM rate measured in this run):
  pretrain   a full forward+backward of the multi-task network (conv stack + h1-h3 + heads)
  search     stage 1 of Algorithm 1 (Algorithm1Step.search): frozen conv forward, image embedding,
             embeddings of 2010 candidate poses, scores + MPJPE margins, argmax
  margin     stage 2 without the line search (Algorithm1Step.gradient) after a frozen conv
             forward: cost and gradients of the fully connected layers on (x, y, y_hat)
  linesearch the 10-point grid line search of stage 2 (Algorithm1Step.line_search; y_hat
             re-selected at each trial step)
With --torch PYTHON (a Python with PyTorch, never a dependency of this project) it also runs the
PyTorch peer ../shared/bench/torch_structnet.py in the same run and prints the ratios.

    python bench/bench_train.py [--reps 5] [--torch /path/to/venv/bin/python] [--conv-algorithm auto|fixed|fft|im2col]

It prints first the CPU, nn.parallel's threads and the convolution algorithms (nn.conv_tune) of
the phases, beside the fixed rule.
"""
import argparse
import os
import re
import subprocess
import sys
from dataclasses import replace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import conv_flops, gemm_rate, median_time, print_setup  # noqa: E402
from data.h36m import N_JOINTS, POSE_DIM  # noqa: E402
from nn.backend import keep_freed_memory  # noqa: E402
from structlearn.algorithm1 import Algorithm1Step  # noqa: E402
from structlearn.cost import Objective  # noqa: E402
from structlearn.linesearch import step_grid  # noqa: E402
from structlearn.network import PRESETS, MultiTaskNet, StructNet  # noqa: E402
from structlearn.pretrain import multitask_cost  # noqa: E402
from structlearn.search import WorkingSet  # noqa: E402

PEER = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench", "torch_structnet.py")


def flops(cfg, B, C):
    """Multiply-add FLOPs of the phases (x2 per multiply-add)."""
    size, c_in, conv_f, conv_b = cfg.input_size, 3, 0, 0
    for i, (k, c_out) in enumerate(cfg.convs):
        out = size - k + 1
        f = conv_flops(B, c_in, c_out, k, out, out)
        conv_f += f
        conv_b += f * (2 if i > 0 else 1)  # the image needs no gradient
        size, c_in = out // 2, c_out
    net = StructNet(cfg)
    d2, d3, H, D = net.convs.d2, net.convs.d3, cfg.hidden, cfg.embed
    trunk = 2 * B * (d2 * H + d3 * H + 2 * H * H)
    aux = 2 * B * H * POSE_DIM
    det = 2 * B * H * N_JOINTS * cfg.detect_grid ** 2
    img = trunk + 2 * B * H * D + aux
    pose = 2 * (POSE_DIM * D + D * D)  # per pose
    return {
        "pretrain": conv_f + conv_b + 3 * (trunk + aux + det),
        "search": conv_f + img + C * pose + 2 * B * D * C,
        "margin": conv_f + 3 * (img + 2 * B * pose),
    }


def make_phases(cfg, B, C, xp, fused_search=False):
    """{phase: () -> result} on random inputs of the given sizes, with arrays of module xp (numpy
    or cupy). The Algorithm 1 phases are the stages of the trainer's own structlearn.algorithm1.
    Algorithm1Step, over a pose space of C poses that are all candidates. fused_search: stage 1
    without the (B, C) margins (the fused kernel on the GPU)."""
    rng = np.random.default_rng(0)
    S = cfg.input_size
    dev = (lambda a: a) if xp is np else xp.asarray
    images = dev(rng.standard_normal((B, 3, S, S), dtype=np.float32))
    y_n = dev(rng.uniform(-0.8, 0.8, (B, POSE_DIM)).astype(np.float32))
    bank_n = dev(rng.uniform(-0.8, 0.8, (C, POSE_DIM)).astype(np.float32))
    y_mm = dev(rng.normal(0, 200, (B, N_JOINTS, 3)).astype(np.float32))
    bank_mm = dev(rng.normal(0, 200, (C, N_JOINTS, 3)).astype(np.float32))
    cells = dev(rng.integers(-1, cfg.detect_grid ** 2, (B, N_JOINTS)))
    device = "cpu" if xp is np else "gpu"

    mt = MultiTaskNet(cfg)
    p_mt = mt.init_params(rng).to(device)
    masks = mt.image.make_masks(rng, B, mt.convs.d2, mt.convs.d3, np.float32, xp)
    phases = {"pretrain": lambda: multitask_cost(mt, p_mt, images, y_n, cells, masks, 1.0, 1e-4, p_mt.weight_names)}

    net = StructNet(cfg)
    p = net.init_params(rng)
    p["g7.W"] = 0.01 * rng.standard_normal(p["g7.W"].shape).astype(np.float32)
    p = p.to(device)

    def algorithm1(reselect):
        return Algorithm1Step(net, bank_mm, bank_n, WorkingSet(C), Objective(1.0, 1e-4, tuple(net.decayed(p))),
                              net.trainable(p), step_grid(), C, 0, 1.0, reselect=reselect)
    alg = algorithm1(reselect=True)
    searcher = algorithm1(reselect=False) if fused_search else alg
    phases["search"] = lambda: searcher.search(p, images, y_mm, y_n, np.random.default_rng(1))
    d = alg.search(p, images, y_mm, y_n, np.random.default_rng(1))

    def margin():  # stage 2 with the frozen conv forward, as the peer's margin step
        f2, f3 = net.convs.features(p, images)
        return alg.gradient(p, replace(d, f2=f2, f3=f3))
    phases["margin"] = margin
    _, grads = alg.gradient(p, d)
    phases["linesearch"] = lambda: alg.line_search(p, grads, d)
    return phases


def run_peer(python, B, C, reps):
    out = subprocess.run([python, PEER, "--batch", str(B), "--candidates", str(C), "--reps", str(reps)],
                         capture_output=True, text=True, check=True).stdout
    ms = {k: float(v) for k, v in re.findall(r"(\w+)_ms ([\d.]+)", out)}
    return {"pretrain": ms["full_step"], "search": ms["select_violated"], "margin": ms["margin_step"]}, out.splitlines()[0]


def main():
    keep_freed_memory()  # as the scripts do (nn.backend.keep_freed_memory)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--candidates", type=int, default=2010)
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--torch", default="", help="a Python interpreter with PyTorch, to run the peer in the same run")
    ap.add_argument("--conv-algorithm", default="auto", choices=("auto", "fixed", "fft", "im2col"),
                    help="the convolutions' algorithms (nn.conv_tune; default: %(default)s)")
    args = ap.parse_args()
    B, C, reps = args.batch, args.candidates, args.reps
    cfg = PRESETS[args.preset]
    S = cfg.input_size
    print_setup(MultiTaskNet(cfg).convs.conv_passes(B), args.conv_algorithm)   # the phases' shapes and passes
    times = {k: median_time(f, reps) for k, f in make_phases(cfg, B, C, np).items()}

    rate = gemm_rate()
    fl = flops(cfg, B, C)
    peer, peer_head = (run_peer(args.torch, B, C, reps) if args.torch else (None, ""))
    print(f"preset {args.preset}: batch {B}, {S}x{S} inputs, {C} candidates; numpy float32 GEMM rate "
          f"{rate / 1e9:.1f} GFLOP/s")
    if peer:
        print(f"peer: {peer_head}")
    print(f"{'phase':<12}{'ms':>9}{'GFLOP':>9}{'x floor':>9}" + (f"{'torch ms':>10}{'torch/ours':>12}" if peer else ""))
    for k in ("pretrain", "search", "margin", "linesearch"):
        ms = times[k] * 1e3
        row = f"{k:<12}{ms:9.0f}"
        if k in fl:
            row += f"{fl[k] / 1e9:9.1f}{times[k] / (fl[k] / rate):9.2f}"
        else:
            row += f"{'':>9}{'':>9}"
        if peer and k in peer:
            row += f"{peer[k]:10.0f}{peer[k] / ms:12.2f}"
        print(row)


if __name__ == "__main__":
    main()

"""GPU benchmark (CuPy): layers, training phases, candidate scoring and inference at the paper's sizes.

All times are CUDA-event times on the current stream, the median of --reps after --warmup calls
(the first call compiles the kernels). Ratios are to the cuBLAS float32 GEMM rate measured in
the same run. Sections:
  layers      forward and backward of each layer of the conv stack, batch 128, 112x112 inputs
  phases      the four phases of bench/bench_train.py (pre-training step, most-violated search,
              max-margin step, line search) and training images per second
  scoring     the most-violated search over 2010 candidates from the image and candidate
              embeddings: the fused kernel (one GEMM + structlearn/kernels/search.cu) against
              one GEMM plus separate CuPy operations (margins kernel, add, argmax) and against
              margins computed with plain CuPy broadcasting
  inference   images per second of StructNet-Max and Avg(500) over a bank of 100,000 poses

    python bench/bench_gpu.py [--reps 20] [--warmup 3] [--preset paper]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.bench_train import flops, make_phases  # noqa: E402
from bench.common import conv_flops  # noqa: E402
from nn import backend  # noqa: E402
from nn.conv import Conv2D  # noqa: E402
from nn.pool import MaxPool2D  # noqa: E402
from structlearn import search_kernels  # noqa: E402
from structlearn.inference import top_k_scores  # noqa: E402
from structlearn.network import PRESETS  # noqa: E402


def gpu_time(f, reps, warmup):
    """Median milliseconds of f() between two CUDA events (after warmup calls)."""
    cp = backend.cupy()
    for _ in range(warmup):
        f()
    cp.cuda.Device().synchronize()
    times = []
    for _ in range(reps):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        f()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop))
    return float(np.median(times))


def cublas_rate(cp, reps, n=8192):
    a = cp.random.standard_normal((n, n), dtype=cp.float32)
    b = cp.random.standard_normal((n, n), dtype=cp.float32)
    return 2 * n ** 3 / (gpu_time(lambda: a @ b, reps, 2) * 1e-3)


def bench_layers(cp, cfg, B, reps, warmup, rate):
    rng = np.random.default_rng(0)
    size, c_in = cfg.input_size, 3
    x = cp.asarray(rng.standard_normal((size, size, B, c_in), dtype=np.float32))
    print(f"\n{'layer':<24}{'fwd ms':>9}{'bwd ms':>9}{'GFLOP/s':>10}{'x floor':>9}")
    for i, (k, c_out) in enumerate(cfg.convs):
        conv = Conv2D(f"conv{i + 1}", c_in, c_out, k)
        params = {n: cp.asarray(v) for n, v in conv.init_params(rng, np.float32).items()}
        y, cache = conv.forward(params, x)
        gy = cp.ones_like(y)
        need_gx = i > 0
        fwd = gpu_time(lambda: conv.forward(params, x), reps, warmup)
        bwd = gpu_time(lambda: conv.backward(params, cache, gy, need_gx=need_gx), reps, warmup)
        f = conv_flops(B, c_in, c_out, k, y.shape[0], y.shape[1]) * (3 if need_gx else 2)
        print(f"{'conv%d %dx%dx%d' % (i + 1, k, k, c_out):<24}{fwd:9.2f}{bwd:9.2f}"
              f"{f / ((fwd + bwd) * 1e-3) / 1e9:10.0f}{(fwd + bwd) * 1e-3 / (f / rate):9.2f}")
        pool = MaxPool2D(f"pool{i + 1}")
        p, pcache = pool.forward({}, y)
        gp = cp.ones_like(p)
        fwd = gpu_time(lambda: pool.forward({}, y), reps, warmup)
        bwd = gpu_time(lambda: pool.backward({}, pcache, gp), reps, warmup)
        moved = (y.nbytes + p.nbytes + p.size) + (gp.nbytes + p.size + y.nbytes)  # bytes read + written
        print(f"{'pool%d' % (i + 1):<24}{fwd:9.2f}{bwd:9.2f}{'':>10}{'':>9}  ({moved / ((fwd + bwd) * 1e-3) / 1e9:.0f} GB/s)")
        x, c_in = cp.maximum(p, 0), c_out


def bench_phases(cp, cfg, B, C, reps, warmup, rate):
    phases = make_phases(cfg, B, C, cp, fused_search=True)
    fl = flops(cfg, B, C)
    times = {k: gpu_time(f, reps, warmup) for k, f in phases.items()}
    print(f"\n{'phase':<12}{'ms':>9}{'GFLOP':>9}{'x floor':>9}")
    for k, ms in times.items():
        row = f"{k:<12}{ms:9.2f}"
        if k in fl:
            row += f"{fl[k] / 1e9:9.1f}{ms * 1e-3 / (fl[k] / rate):9.2f}"
        print(row)
    step = times["search"] + times["margin"] + times["linesearch"]
    print(f"training images/s: pre-training {B / (times['pretrain'] * 1e-3):.0f}, "
          f"max-margin (search + step + line search) {B / (step * 1e-3):.0f}")


def bench_scoring(cp, B, C, D, reps, warmup, rate):
    rng = np.random.default_rng(1)
    f_I = cp.asarray(rng.standard_normal((B, D), dtype=np.float32))
    emb = cp.asarray(rng.standard_normal((C, D), dtype=np.float32))
    y = cp.asarray(rng.normal(0, 200, (B, 17, 3)).astype(np.float32))
    cand = cp.asarray(rng.normal(0, 200, (C, 17, 3)).astype(np.float32))

    def fused():
        return search_kernels.most_violated(f_I @ emb.T, y, cand, 1.0)

    def separate():
        values = f_I @ emb.T + search_kernels.pairwise_mpjpe(y, cand)
        idx = values.argmax(axis=1)
        return idx, values[cp.arange(B), idx]

    def broadcast():
        margins = cp.sqrt(((y[:, None] - cand[None]) ** 2).sum(-1)).mean(-1)  # (B, C, 17, 3) temporaries
        values = f_I @ emb.T + margins
        idx = values.argmax(axis=1)
        return idx, values[cp.arange(B), idx]

    a, b = fused(), separate()
    agree = float((a[0] == b[0]).mean())
    gemm = gpu_time(lambda: f_I @ emb.T, reps, warmup)
    print(f"\nmost-violated search, B={B}, C={C}, D={D} (argmax agreement fused/separate {agree:.3f})")
    for name, f in (("GEMM alone", lambda: f_I @ emb.T), ("fused kernel (GEMM + search.cu)", fused),
                    ("GEMM + margins kernel + add + argmax", separate), ("GEMM + CuPy broadcasting", broadcast)):
        ms = gemm if name == "GEMM alone" else gpu_time(f, reps, warmup)
        print(f"  {name:<40}{ms * 1e3:9.1f} us   {ms / gemm:6.2f}x the GEMM")


def bench_inference(cp, B, M, D, reps, warmup, rate):
    rng = np.random.default_rng(2)
    f_I = cp.asarray(rng.standard_normal((B, D), dtype=np.float32))
    bank = cp.asarray(rng.standard_normal((M, D), dtype=np.float32))
    floor = 2 * B * M * D / rate * 1e3
    print(f"\ninference over a bank of {M} poses, batch {B}, D={D} (GEMM floor {floor:.2f} ms)")
    for A in (1, 500):
        ms = gpu_time(lambda: top_k_scores(f_I, bank, A, chunk=65536), reps, warmup)
        print(f"  top-{A:<5}{ms:8.2f} ms  {B / (ms * 1e-3):10.0f} images/s  {ms / floor:6.2f}x floor")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--candidates", type=int, default=2010)
    ap.add_argument("--bank", type=int, default=100000)
    ap.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    ap.add_argument("--only", default="layers,phases,scoring,inference")
    args = ap.parse_args()
    try:
        cp = backend.cupy()
    except RuntimeError as err:
        sys.exit(f"bench_gpu: {err}")
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    rate = cublas_rate(cp, args.reps)
    cfg = PRESETS[args.preset]
    print(f"device {name}; CuPy {cp.__version__}; CUDA runtime {cp.cuda.runtime.runtimeGetVersion()}; "
          f"cuBLAS float32 GEMM rate {rate / 1e12:.1f} TFLOP/s; preset {args.preset}")
    only = set(args.only.split(","))
    if "layers" in only:
        bench_layers(cp, cfg, args.batch, args.reps, args.warmup, rate)
    if "phases" in only:
        bench_phases(cp, cfg, args.batch, args.candidates, args.reps, args.warmup, rate)
    if "scoring" in only:
        bench_scoring(cp, args.batch, args.candidates, cfg.embed, args.reps, args.warmup, rate)
    if "inference" in only:
        bench_inference(cp, args.batch, args.bank, cfg.embed, args.reps, args.warmup, rate)


if __name__ == "__main__":
    main()

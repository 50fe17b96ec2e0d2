"""nn layer benchmark at the paper's shapes (batch 128, input 3x112x112).

conv1 9x9x32 + pool, conv2 5x5x32 + pool, conv3 5x5x64 + pool, FC 1024s. Prints, for each layer,
forward and backward milliseconds (median), GFLOP/s and the ratio of its time to its GEMM floor
(FLOPs / the float32 GEMM rate measured in this run), for both convolution algorithms; then the
whole conv stack's forward+backward, by the algorithms nn.conv_tune chose (printed first, with the
CPU and the threads), against its floor. The stack's backward skips conv1's input
gradient (the image needs none), as PyTorch does.

    python bench/bench_nn.py [--batch 128] [--reps 5] [--conv-algorithm auto|fixed|fft|im2col]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from nn.backend import keep_freed_memory  # noqa: E402
from bench.common import conv_flops, gemm_rate, median_time, print_setup  # noqa: E402
from nn import Conv2D, Linear, MaxPool2D, Params, ReLU, conv_tune  # noqa: E402

CONVS = [("conv1", 3, 32, 9, 112), ("conv2", 32, 32, 5, 52), ("conv3", 32, 64, 5, 24)]


def main():
    keep_freed_memory()  # as the scripts do (nn.backend.keep_freed_memory)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--conv-algorithm", default="auto", choices=("auto", "fixed", "fft", "im2col"),
                    help="the conv stack's algorithms (nn.conv_tune; default: %(default)s)")
    args = ap.parse_args()
    n, reps = args.batch, args.reps
    rng = np.random.default_rng(0)
    convs = [Conv2D(nm, c, o, k) for nm, c, o, k, _ in CONVS]
    print_setup([(f"{conv.name} {h}x{h}x{n}x{conv.in_c}", conv, (h, h, n, conv.in_c), np.dtype(np.float32),
                  conv_tune.PASSES[:2 if i == 0 else 3]) for i, (conv, (*_, h)) in enumerate(zip(convs, CONVS))],
                args.conv_algorithm)
    rate = gemm_rate()
    print(f"numpy float32 GEMM rate (2048^3): {rate / 1e9:.1f} GFLOP/s; batch {n}")
    print(f"{'layer':<22}{'fwd ms':>9}{'bwd ms':>9}{'GFLOP/s':>9}{'x floor':>9}")

    def report(label, t_f, t_b, flops):
        print(f"{label:<22}{t_f * 1e3:9.1f}{t_b * 1e3:9.1f}{flops / (t_f + t_b) / 1e9:9.1f}"
              f"{(t_f + t_b) / (flops / rate):9.2f}")

    for name, c, o, k, h in CONVS:
        x = rng.standard_normal((h, h, n, c), dtype=np.float32)
        oh = h - k + 1
        for algo in ("im2col", "fft"):
            layer = Conv2D(name, c, o, k, algorithm=algo)
            p = Params.init([layer], rng)
            y, cache = layer.forward(p, x)
            gy = rng.standard_normal(y.shape, dtype=np.float32)
            t_f = median_time(lambda: layer.forward(p, x), reps)
            t_b = median_time(lambda: layer.backward(p, cache, gy), reps)
            report(f"{name} {algo}", t_f, t_b, 3 * conv_flops(n, c, o, k, oh, oh))
        pool = MaxPool2D("pool", 2)
        y, pc = pool.forward({}, np.ascontiguousarray(y))
        t_f = median_time(lambda: pool.forward({}, gy), reps)
        t_b = median_time(lambda: pool.backward({}, pc, y), reps)
        print(f"{'  pool after ' + name:<22}{t_f * 1e3:9.1f}{t_b * 1e3:9.1f}")

    for name, din in (("h1 (conv2 feats)", 32 * 24 * 24), ("h2 (conv3 feats)", 64 * 10 * 10), ("h3", 2048), ("h4", 1024)):
        layer = Linear("fc", din, 1024)
        p = Params.init([layer], rng)
        x = rng.standard_normal((n, din), dtype=np.float32)
        y, cache = layer.forward(p, x)
        t_f = median_time(lambda: layer.forward(p, x), reps)
        t_b = median_time(lambda: layer.backward(p, cache, y), reps)
        report(name, t_f, t_b, 3 * 2 * n * din * 1024)

    # the whole conv stack as the model runs it: conv -> pool -> ReLU (x2), conv -> pool (linear);
    # pooling before ReLU is exact (max commutes with a monotone function) and 4x cheaper
    pools = [MaxPool2D(f"pool{i + 1}", 2) for i in range(3)]
    relu = ReLU()
    p = Params.init(convs, rng)
    x = rng.standard_normal((112, 112, n, 3), dtype=np.float32)

    def forward():
        caches, h = [], x
        for i, (conv, pool) in enumerate(zip(convs, pools)):
            h, cc = conv.forward(p, h)
            h, pc = pool.forward({}, h)
            rc = None
            if i < 2:
                h, rc = relu.forward({}, h)
            caches.append((cc, rc, pc))
        return h, caches

    def forward_backward():
        h, caches = forward()
        g = np.ones_like(h)
        for i in reversed(range(3)):
            cc, rc, pc = caches[i]
            if rc is not None:
                g, _ = relu.backward({}, rc, g)
            g, _ = pools[i].backward({}, pc, g)
            g, _ = convs[i].backward(p, cc, g, need_gx=(i > 0))

    flops = 0
    for i, (nm, c, o, k, h) in enumerate(CONVS):
        flops += conv_flops(n, c, o, k, h - k + 1, h - k + 1) * (2 if i == 0 else 3)
    t_fwd = median_time(lambda: forward(), reps)
    t_all = median_time(forward_backward, reps)
    floor = flops / rate
    print(f"\nconv stack ({args.conv_algorithm} algorithms above, pooling, ReLU): forward {t_fwd * 1e3:.0f} ms, "
          f"forward+backward "
          f"{t_all * 1e3:.0f} ms; {flops / 1e9:.1f} GFLOP, GEMM floor {floor * 1e3:.0f} ms -> "
          f"{t_all / floor:.2f}x floor (target <= 2x)")


if __name__ == "__main__":
    main()

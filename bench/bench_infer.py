"""Inference speed (prints; asserts nothing): the image network, the bank scoring of
StructNet-Max and StructNet-Avg(500) over a 100,000-pose bank, the APF and the IK per image.

    python bench/bench_infer.py                      # both presets, batch 256, bank 100,000
    python bench/bench_infer.py --presets cpu --bank 20000 --apf-images 32

The bank scoring uses random embeddings of the preset's size (the scoring does not care what
they mean) and random bank poses for the averaging. Its GEMM floor is FLOPs / the float32 GEMM
rate measured in the same run (2 x batch x bank x embedding FLOPs: the score matrix is the only
arithmetic of any size); the ratio says how much the streaming top-k adds to it. Times are the
best of --reps runs, the least disturbed by other processes on a shared machine; the load
average is printed before and after.
"""
import argparse
import contextlib
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from nn.backend import keep_freed_memory  # noqa: E402

from apf import APFConfig, refine_poses  # noqa: E402
from bench.common import best_time, gemm_rate, threads_override  # noqa: E402
from nn import conv_tune, parallel  # noqa: E402
from data.h36m import N_JOINTS  # noqa: E402
from data.skeleton import ANGLE_LIMITS, N_ANGLES, Skeleton, clip_angles  # noqa: E402
from structlearn.inference import average_prefixes, image_outputs, top_k_scores  # noqa: E402
from structlearn.network import PRESETS, StructNet  # noqa: E402


def load():
    try:
        return "load average " + " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "load average n/a"


def bench_network(preset, batch, reps, rng):
    cfg = PRESETS[preset]
    net = StructNet(cfg)
    params = net.init_params(rng)
    x = rng.standard_normal((batch, 3, cfg.input_size, cfg.input_size)).astype(np.float32)
    t = best_time(lambda: image_outputs(net, params, x), reps, warmup=1)
    return batch / t, t


def bench_bank(D, M, batch, A, chunk, reps, rng, gflops):
    f_I = np.maximum(rng.standard_normal((batch, D)), 0).astype(np.float32)   # ReLU outputs, like f_I
    emb = np.maximum(rng.standard_normal((M, D)), 0).astype(np.float32)
    poses = rng.normal(0, 300, (M, N_JOINTS, 3)).astype(np.float32)
    floor = 2.0 * batch * M * D / (gflops * 1e9)
    t_gemm = best_time(lambda: [f_I @ emb[s:s + chunk].T for s in range(0, M, chunk)], reps, warmup=1)

    def max_():
        _, i = top_k_scores(f_I, emb, 1, chunk)
        return poses[i[:, 0]]

    def avg_():
        _, i = top_k_scores(f_I, emb, A, chunk)
        return average_prefixes(i, poses, [A])[A]

    t_max = best_time(max_, reps, warmup=1)
    t_avg = best_time(avg_, reps, warmup=1)
    return {"floor": floor, "gemm": t_gemm, "max": t_max, "avg": t_avg}


def bench_apf(n, config, rng):
    skel = Skeleton.from_height(1700.0)
    lo, hi = ANGLE_LIMITS[:, 0] * 0.6, ANGLE_LIMITS[:, 1] * 0.6
    truth = clip_angles(rng.uniform(lo, hi, (n, N_ANGLES)))
    # the Avg(A) situation: the target is the mean of 50 poses around the truth, the start one of them
    around = clip_angles(truth[:, None] + rng.normal(0, 10 * np.pi / 180, (n, 50, N_ANGLES)))
    poses = skel.forward(around)
    target, init = poses.mean(axis=1), poses[:, 0]
    t_apf = {}   # best of 3 with this process's threads and with one, alternating (the same bits)
    for _ in range(3):
        for k in dict.fromkeys((parallel.threads(), 1)):
            with threads_override(k) if k == 1 else contextlib.nullcontext():
                t0 = time.perf_counter()
                refine_poses(skel, target, init, config)
                t_apf[k] = min(t_apf.get(k, np.inf), time.perf_counter() - t0)
    t_ik = best_time(lambda: skel.forward(skel.inverse(target)), 3, warmup=1)
    return {k: 1e3 * t / n for k, t in t_apf.items()}, 1e3 * t_ik / n


def main():
    keep_freed_memory()  # as the scripts do (nn.backend.keep_freed_memory)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="cpu,paper", help="network presets (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=256, help="test images per batch (default: %(default)s)")
    parser.add_argument("--bank", type=int, default=100_000, help="bank poses (default: %(default)s)")
    parser.add_argument("--A", type=int, default=500, help="A of StructNet-Avg(A) (default: %(default)s)")
    parser.add_argument("--chunk", type=int, default=16384, help="bank poses per GEMM (default: %(default)s)")
    parser.add_argument("--reps", type=int, default=3, help="timed runs, best reported (default: %(default)s)")
    parser.add_argument("--apf-images", type=int, default=64, help="images for the APF timing (default: %(default)s)")
    args = parser.parse_args()
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        parser.error(f"unknown preset {unknown[0]!r}; choose from {', '.join(PRESETS)}")
    rng = np.random.default_rng(0)
    print(f"CPU {conv_tune.cpu_model()}; {parallel.describe()}")
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs; {load()}; best of {args.reps} runs")
    gflops = gemm_rate() / 1e9
    print(f"float32 GEMM 2048^3: {gflops:.0f} GFLOP/s")

    for preset in presets:
        D = PRESETS[preset].embed
        cfg = PRESETS[preset]
        ips, t = bench_network(preset, args.batch, args.reps, rng)
        print(f"\n[{preset}] image network ({cfg.input_size}x{cfg.input_size} input, f_I and f_P), batch {args.batch}: "
              f"{ips:8.1f} images/s ({1e3 * t / args.batch:.2f} ms/image)")
        b = bench_bank(D, args.bank, args.batch, args.A, args.chunk, args.reps, rng, gflops)
        print(f"[{preset}] bank scoring, {args.bank} poses x {D}-d embedding, batch {args.batch}, chunk {args.chunk}:")
        print(f"    GEMM floor {1e3 * b['floor']:8.1f} ms/batch; chunked GEMM alone {1e3 * b['gemm']:8.1f} ms "
              f"({b['gemm'] / b['floor']:.2f}x floor)")
        for name, key in (("Max", "max"), (f"Avg({args.A})", "avg")):
            t = b[key]
            print(f"    {name:>9}: {args.batch / t:9.1f} images/s ({1e3 * t:8.1f} ms/batch, {t / b['floor']:.2f}x "
                  f"GEMM floor); with the network: {1 / (1 / ips + t / args.batch):8.1f} images/s")

    ms_apf, ms_ik = bench_apf(args.apf_images, APFConfig(), rng)
    n = parallel.threads()
    other = f"; on 1 thread {ms_apf[1]:.1f} ms/image ({ms_apf[1] / ms_apf[n]:.2f}x)" if n > 1 else ""
    print(f"\nAPF (default APFConfig: {APFConfig().n_particles} particles, {APFConfig().n_layers} layers x "
          f"{len(APFConfig().stages)} stages), {args.apf_images} images: {ms_apf[n]:.1f} ms/image on {n} "
          f"thread{'s' if n > 1 else ''}{other}")
    print(f"IK projection (skeleton.forward(skeleton.inverse(avg))): {ms_ik:.3f} ms/image")
    print(load())


if __name__ == "__main__":
    main()

"""Timings and accuracy of the APF post-processing and the kinematics under it (prints; asserts nothing).

    python bench/bench_apf.py                 # default APFConfig, 64 synthetic images
    python bench/bench_apf.py --images 32 --particles 256 --layers 10 --stages all

Scenarios (synthetic poses of a 1.7 m skeleton, angles uniform in the central 60% of the limits,
random root orientation; no Human3.6M data involved):
  perturbed  target = a valid pose, start = its angles + N(0, 10 deg) on every angle
  average    target = mean joint positions of 50 valid poses around a ground truth (each angle
             + N(0, 10 deg)), start = the first of them: the StructNet-Avg(A) situation, where
             the target itself is not a valid pose
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from nn.backend import keep_freed_memory  # noqa: E402
from bench.common import best_time  # noqa: E402

from apf.filter import APFConfig, STAGES, refine_angles  # noqa: E402
from data.metrics import mpjpe, pairwise_mpjpe  # noqa: E402
from data.skeleton import ANGLE_LIMITS, N_ANGLES, Skeleton, clip_angles  # noqa: E402


def random_angles(rng, n):
    a = rng.uniform(ANGLE_LIMITS[:, 0] * 0.6, ANGLE_LIMITS[:, 1] * 0.6, size=(n, N_ANGLES))
    axis = rng.normal(size=(n, 3))
    a[:, :3] = axis / np.linalg.norm(axis, axis=1, keepdims=True) * rng.uniform(0, np.pi, (n, 1))
    return clip_angles(a)


def main():
    keep_freed_memory()  # as the scripts do (nn.backend.keep_freed_memory)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64, help="synthetic images per scenario (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic poses (default 0)")
    group = parser.add_argument_group("APF settings (default: APFConfig's)")
    defaults = APFConfig()
    group.add_argument("--particles", type=int, default=defaults.n_particles, help="particles per image")
    group.add_argument("--layers", type=int, default=defaults.n_layers, help="annealing layers per stage")
    group.add_argument("--stages", default=",".join(defaults.stages),
                       help=f"comma-separated stages among {', '.join(STAGES)}")
    group.add_argument("--survival-rate", type=float, default=defaults.survival_rate, help="target alpha")
    group.add_argument("--diffusion", type=float, default=defaults.init_diffusion,
                       help="initial diffusion (radians)")
    group.add_argument("--shrink", type=float, default=defaults.shrink, help="diffusion factor per layer")
    parser.add_argument("--ik-start", action="store_true",
                        help="start the average scenario from the inverse kinematics of its target "
                             "instead of one of the averaged poses")
    args = parser.parse_args()
    if args.images < 1:
        parser.error("--images must be at least 1")
    try:
        config = APFConfig(n_particles=args.particles, n_layers=args.layers, survival_rate=args.survival_rate,
                           init_diffusion=args.diffusion, shrink=args.shrink,
                           stages=tuple(s for s in args.stages.split(",") if s))
    except ValueError as err:
        parser.error(str(err))

    rng = np.random.default_rng(args.seed)
    skel = Skeleton.from_height(1700.0)
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs; best of repeated runs")

    # Kinematics: the filter's inner loop is forward() on n_images * n_particles poses.
    a = random_angles(rng, 8192)
    poses = skel.forward(a)
    print(f"forward  8192 poses: {best_time(lambda: skel.forward(a), 5, warmup=0) / 8192 * 1e6:6.2f} us/pose")
    print(f"inverse  8192 poses: {best_time(lambda: skel.inverse(poses), 5, warmup=0) / 8192 * 1e6:6.2f} us/pose")
    print(f"round trip |forward(inverse(p)) - p| over 8192 valid poses: max "
          f"{np.abs(skel.forward(skel.inverse(poses)) - poses).max():.1e} mm")
    ab = skel.forward(random_angles(rng, 128)).astype(np.float32)
    cd = skel.forward(random_angles(rng, 2010)).astype(np.float32)
    for dtype in (np.float32, np.float64):
        ms = best_time(lambda: pairwise_mpjpe(ab.astype(dtype), cd.astype(dtype)), 5, warmup=0) * 1e3
        print(f"pairwise_mpjpe 128 x 2010 ({np.dtype(dtype).name}): {ms:6.1f} ms")

    n = args.images
    truth = random_angles(rng, n)
    gt = skel.forward(truth)
    start = clip_angles(truth + rng.normal(0, np.radians(10), truth.shape))
    samples = clip_angles(truth[:, None] + rng.normal(0, np.radians(10), (n, 50, N_ANGLES)))
    sample_poses = skel.forward(samples)
    average = sample_poses.mean(axis=1)

    print(f"\nAPF {config}")
    average_start = skel.inverse(average) if args.ik_start else samples[:, 0]
    for name, target, init in (("perturbed", gt, start), ("average", average, average_start)):
        t = time.perf_counter()
        angles, err = refine_angles(skel, target, init, config)
        ms = (time.perf_counter() - t) / n * 1e3
        before = mpjpe(skel.forward(init), target)
        line = (f"{name:9s}: {ms:6.1f} ms/image; MPJPE to target {before.mean():6.1f} -> {err.mean():5.1f} mm "
                f"(median {np.median(err):5.1f}, max {err.max():5.1f})")
        if name == "average":
            ik = skel.forward(skel.inverse(target))
            line += (f"; to ground truth: average {mpjpe(target, gt).mean():5.1f}, APF "
                     f"{mpjpe(skel.forward(angles), gt).mean():5.1f}, IK projection of the average "
                     f"{mpjpe(ik, gt).mean():5.1f} (its MPJPE to target {mpjpe(ik, target).mean():5.1f})")
        print(line)


if __name__ == "__main__":
    main()

"""Timings and accuracy of the APF post-processing and the kinematics under it (prints; asserts nothing).

    python bench/bench_apf.py                 # default APFConfig, 64 synthetic images
    python bench/bench_apf.py --images 32 --particles 256 --layers 10 --stages all
    python bench/bench_apf.py --distant --data cache/synth_h36m_v3_scale1_seed0_lab.h5   # + distant starts

Scenarios (synthetic poses of a 1.7 m skeleton, angles uniform in the central 60% of the limits,
random root orientation; no Human3.6M data involved):
  perturbed  target = a valid pose, start = its angles + N(0, 10 deg) on every angle
  average    target = mean joint positions of 50 valid poses around a ground truth (each angle
             + N(0, 10 deg)), start = the first of them: the StructNet-Avg(A) situation, where
             the target itself is not a valid pose
  distant    (--distant, needs a data file) target = a test pose of the file (S9, S11; evenly
             spaced), the skeleton its subject's (from the T pose); start 1 = a random test pose
             of the same action from another sequence, start s > 1 = either further random ones
             ("random") or, as the evaluation chooses them (apf.choose_starts), the ones nearest
             the target among 64 such poses ("nearest"). Reported: final MPJPE to the target minus
             the IK floor |forward(inverse(target)) - target| (the valid pose the inverse gives),
             for each number of starts.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from nn.backend import keep_freed_memory  # noqa: E402
from bench.common import best_time  # noqa: E402

from apf.filter import APFConfig, STAGES, choose_starts, refine_angles  # noqa: E402
from data.metrics import mpjpe, pairwise_mpjpe  # noqa: E402
from data.skeleton import ANGLE_LIMITS, N_ANGLES, Skeleton, clip_angles  # noqa: E402


def random_angles(rng, n):
    a = rng.uniform(ANGLE_LIMITS[:, 0] * 0.6, ANGLE_LIMITS[:, 1] * 0.6, size=(n, N_ANGLES))
    axis = rng.normal(size=(n, 3))
    a[:, :3] = axis / np.linalg.norm(axis, axis=1, keepdims=True) * rng.uniform(0, np.pi, (n, 1))
    return clip_angles(a)


def distant_starts(path, n_images, starts, config, seed):
    """The distant scenario (module docstring): prints one line per (rule, number of starts)."""
    from dataclasses import replace

    from data.dataset import PoseDataset
    ds = PoseDataset(path)
    test = ds.select(subjects="test")
    meta = ds.metadata(test)
    poses = ds.poses(test).astype(np.float64)
    poses -= poses[:, :1]
    rng = np.random.default_rng(seed)
    pick = np.unique(np.linspace(0, len(test) - 1, n_images).round().astype(int))
    seq = np.char.add(np.char.add(meta["subject"].astype(str), meta["action"].astype(str)),
                      meta["subaction"].astype(str))
    pools = []   # per target: 64 random test poses of its action from other sequences
    for i in pick:
        pool = np.flatnonzero((meta["action"] == meta["action"][i]) & (seq != seq[i]))
        pools.append(rng.choice(pool, 64, replace=len(pool) < 64))
    pools = np.array(pools)
    targets = poses[pick]
    subjects = meta["subject"][pick].astype(str)
    skel = {s: Skeleton.from_poses(ds.tpose(s)[None]) for s in set(subjects.tolist())}
    floor = np.empty(len(pick))
    for s, k in skel.items():
        m = subjects == s
        floor[m] = mpjpe(k.forward(k.inverse(targets[m])), targets[m])
    print(f"\ndistant starts: {len(pick)} test poses of {path}; IK floor {floor.mean():.1f} mm (mean)")
    print("rule     starts   final - IK floor (mm): mean  median   p90    max  share <= 10 mm   ms/image")
    for rule in ("random", "nearest"):
        for k in starts:
            cand = poses[pools]
            inits = cand[:, :k] if rule == "random" else choose_starts(cand, targets, k)
            cfg = replace(config, starts=k)
            final = np.empty(len(pick))
            t = time.perf_counter()
            for s, sk in skel.items():
                m = subjects == s
                _, final[m] = refine_angles(sk, targets[m], sk.inverse(inits[m]), cfg)
            ms = (time.perf_counter() - t) / len(pick) * 1e3
            gap = final - floor
            print(f"{rule:8s} {k:6d}   {gap.mean():27.1f} {np.median(gap):7.1f} {np.percentile(gap, 90):6.1f} "
                  f"{gap.max():6.1f} {np.mean(gap <= 10):12.0%}   {ms:9.1f}", flush=True)


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
    group = parser.add_argument_group("distant starts (skipped unless --distant)")
    group.add_argument("--distant", action="store_true", help="also run the distant-start scenario on --data")
    group.add_argument("--data", default="cache/synth_h36m_v3_scale1_seed0_lab.h5",
                       help="data file of the distant scenario (read only; default: %(default)s)")
    group.add_argument("--distant-images", type=int, default=64, help="test poses (default: %(default)s)")
    group.add_argument("--starts", default="1,2,4,8", help="numbers of starts, comma-separated (default: %(default)s)")
    args = parser.parse_args()
    if args.images < 1:
        parser.error("--images must be at least 1")
    if args.distant_images < 1:
        parser.error("--distant-images must be at least 1")
    try:
        starts = [int(k) for k in args.starts.split(",") if k.strip()]
    except ValueError:
        parser.error(f"--starts: expected comma-separated integers, got {args.starts!r}")
    if not starts or min(starts) < 1 or max(starts) > 64:
        parser.error(f"--starts: expected numbers from 1 to 64, got {args.starts!r}")
    try:
        config = APFConfig(n_particles=args.particles, n_layers=args.layers, survival_rate=args.survival_rate,
                           init_diffusion=args.diffusion, shrink=args.shrink,
                           stages=tuple(s for s in args.stages.split(",") if s))
    except ValueError as err:
        parser.error(str(err))

    rng = np.random.default_rng(args.seed)
    skel = Skeleton.from_height(1700.0)
    from nn import conv_tune, parallel
    print(f"CPU {conv_tune.cpu_model()}; {parallel.describe()} (the APF's filter runs are split over the threads)")
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
    if args.distant:
        distant_starts(args.data, args.distant_images, starts, config, args.seed)


if __name__ == "__main__":
    main()

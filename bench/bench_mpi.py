"""Data-parallel scale-out benchmark (docs/mpi.md): one training step on N = 1 and 2 MPI processes at a
fixed number of threads per process, split into compute and communication, and a model of the
step for N up to 64 on a cluster interconnect.

Each process runs the trainer's own step objects (structlearn.pretrain.PretrainStep and
structlearn.algorithm1.Algorithm1Step) with nn.comm on its share of a global batch of random
inputs, pinned to its own --threads cores (os.sched_setaffinity, BLAS and FFT threads the same).
Per step it records the wall time and, from nn.comm's counters, the time inside collectives
(including any wait for a slower rank), the collectives and the bytes reduced. Communication is
what is measured inside the collectives; compute is the rest.

Communication splits into transfer (the same reductions timed alone, after a barrier) and wait
(the rest: a rank waiting for a slower one).

The model: compute(N) = serial + per_example * B / N, fitted in one process to the compute times
at batch B and B / 2 (the serial part is what every rank does whatever its share: the C
candidates' embeddings, the weight decay, the step); each collective of n bytes costs a ring
allreduce, 2 (N - 1) alpha + 2 (N - 1) / N * n / beta, with the cluster's latency alpha and
bandwidth beta (--latency-us, --bandwidth-gbs); no wait (balanced ranks). Efficiency =
step(1) / (N step(N)).

    python bench/bench_mpi.py [--preset cpu] [--batch 128] [--threads 1] [--reps 5]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREDICT_N = (1, 2, 4, 8, 16, 32, 64)


def worker(args):
    """One rank: pin to its cores, build the steps, time them; rank 0 prints one JSON line."""
    local = int(os.environ.get("MPI_LOCALRANKID", os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", "0")))
    cores = sorted(os.sched_getaffinity(0))
    mine = cores[local * args.threads:(local + 1) * args.threads] or cores[:args.threads]
    os.sched_setaffinity(0, mine)       # before NumPy starts its threads

    import numpy as np
    sys.path.insert(0, ROOT)
    from bench.common import gemm_rate
    from data.h36m import N_JOINTS, POSE_DIM
    from nn import comm as nncomm
    from nn.backend import keep_freed_memory
    from structlearn.algorithm1 import Algorithm1Step
    from structlearn.cost import Objective
    from structlearn.linesearch import step_grid
    from structlearn.network import PRESETS, MultiTaskNet, StructNet
    from structlearn.pretrain import PretrainStep
    from structlearn.search import WorkingSet

    keep_freed_memory()
    comm = nncomm.world()
    cfg = PRESETS[args.preset]
    B, S, M = args.batch, cfg.input_size, args.bank
    rng = np.random.default_rng(0)          # the same global batch on every rank
    images = rng.standard_normal((B, 3, S, S), dtype=np.float32)
    y_n = rng.uniform(-0.8, 0.8, (B, POSE_DIM)).astype(np.float32)
    y_mm = rng.normal(0, 200, (B, N_JOINTS, 3)).astype(np.float32)
    cells = rng.integers(-1, cfg.detect_grid ** 2, (B, N_JOINTS))
    bank_n = rng.uniform(-0.8, 0.8, (M, POSE_DIM)).astype(np.float32)
    bank_mm = rng.normal(0, 200, (M, N_JOINTS, 3)).astype(np.float32)
    sh = comm.shard(B) if comm.size > 1 else None
    rows = sh.rows if sh else slice(0, B)
    images, y_n, y_mm, cells = images[rows], y_n[rows], y_mm[rows], cells[rows]

    mt = MultiTaskNet(cfg)
    p_mt = mt.init_params(np.random.default_rng(1))
    pre = PretrainStep(mt, p_mt.zeros_like(), 1.0, 1e-4, p_mt.weight_names, 0.9, comm, sh)
    net = StructNet(cfg)
    p = net.init_params(np.random.default_rng(2))
    p["g7.W"] = 0.01 * np.random.default_rng(3).standard_normal(p["g7.W"].shape).astype(np.float32)
    alg = Algorithm1Step(net, bank_mm, bank_n, WorkingSet(M), Objective(1.0, 1e-4, tuple(net.decayed(p))),
                         net.trainable(p), step_grid(), args.candidates, 10, 0.1, comm=comm, shard=sh)
    h = B // 2                          # in one process: the same steps on half the batch (the model's fit)
    steps = {"pretrain": lambda r: pre.step(p_mt, images, y_n, cells, np.random.default_rng([0, r]), 1e-4),
             "algorithm1": lambda r: alg.step(p, images, y_mm, y_n, np.random.default_rng([1, r])),
             "pretrain_half": lambda r: pre.step(p_mt, images[:h], y_n[:h], cells[:h], np.random.default_rng([0, r]),
                                                 1e-4),
             "algorithm1_half": lambda r: alg.step(p, images[:h], y_mm[:h], y_n[:h], np.random.default_rng([1, r]))}
    if comm.size > 1:
        steps = {k: v for k, v in steps.items() if not k.endswith("_half")}
    import time
    result = {"N": comm.size, "threads": len(os.sched_getaffinity(0)), "gemm_gflops": None, "phases": {}}
    for name, step in steps.items():
        rec = []
        for r in range(args.warmup + args.reps):
            comm.barrier()
            c0, b0, n0 = comm.seconds, comm.bytes, comm.calls
            t0 = time.perf_counter()
            step(r)
            rec.append((time.perf_counter() - t0, comm.seconds - c0, comm.bytes - b0, comm.calls - n0))
        rec = rec[args.warmup:]
        # per repetition, the slowest rank sets the step time
        every = comm.allgather(rec)
        wall = [max(e[i][0] for e in every) for i in range(len(rec))]
        i = int(np.argsort(wall)[len(wall) // 2])         # the median repetition
        result["phases"][name] = {"step_s": wall[i], "comm_s": max(e[i][1] for e in every),
                                  "bytes": rec[i][2], "collectives": rec[i][3], "transfer_s": 0.0}
        if comm.size > 1:   # the step's reductions alone: its buffer sizes, after a barrier
            sizes = [rec[i][2] // 4] if name == "pretrain" else [(rec[i][2] - 8 * B - 80) // 4]
            bufs = [np.zeros(n, np.float32) for n in sizes] + \
                ([np.zeros(B, np.int64), np.zeros(10)] if name == "algorithm1" else [])
            alone = []
            for _ in range(args.reps):
                comm.barrier()
                t0 = time.perf_counter()
                for b in bufs:
                    comm.allreduce_sum(b)
                alone.append(time.perf_counter() - t0)
            result["phases"][name]["transfer_s"] = max(comm.allgather(float(np.median(alone))))
    if comm.root:
        result["gemm_gflops"] = gemm_rate(n=1024, reps=5) / 1e9
        print(json.dumps(result), flush=True)


def ring_allreduce_s(n_bytes, N, alpha, beta):
    """Seconds of a ring allreduce of n_bytes over N ranks: 2 (N - 1) steps of latency alpha, each
    rank sends and receives 2 (N - 1) / N of the buffer at bandwidth beta (bytes/s)."""
    if N == 1:
        return 0.0
    return 2 * (N - 1) * alpha + 2 * (N - 1) / N * n_bytes / beta


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--batch", type=int, default=128, help="global mini-batch (default: %(default)s)")
    ap.add_argument("--candidates", type=int, default=2000, help="C (default: %(default)s)")
    ap.add_argument("--bank", type=int, default=20000, help="poses of the pose space (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="cores per process (default: %(default)s)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--ranks", default="1,2", help="N to measure (default: %(default)s)")
    ap.add_argument("--latency-us", type=float, default=5.0, help="model: per-message latency (default: %(default)s, "
                    "MPI over InfiniBand with software overhead)")
    ap.add_argument("--bandwidth-gbs", type=float, default=10.0, help="model: bandwidth per link in GB/s "
                    "(default: %(default)s, about HDR 100 Gb/s InfiniBand)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if mpiexec is None:
        sys.exit("bench_mpi.py: error: no mpiexec: pip install -e '.[mpi]'")
    ranks = [int(n) for n in args.ranks.split(",")]
    if max(ranks) * args.threads > len(os.sched_getaffinity(0)):
        print(f"note: {max(ranks)} x {args.threads} threads exceed the {len(os.sched_getaffinity(0))} cores here")
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    worker_args = [a for a in sys.argv[1:] if not a.startswith("--ranks")]
    res = {}
    for N in ranks:
        cmd = [mpiexec, "-n", str(N), sys.executable, os.path.abspath(__file__), "--worker", *worker_args]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            sys.exit(f"bench_mpi.py: error: N = {N} failed: {out.stderr.strip()[-500:]}")
        res[N] = json.loads(out.stdout.strip().splitlines()[-1])

    cfg = f"preset {args.preset}, global batch {args.batch}, C {args.candidates}, pose space {args.bank}"
    print(f"{cfg}; {args.threads} thread(s) per process; CPU: {cpu_model()}; numpy float32 GEMM "
          f"{res[ranks[0]]['gemm_gflops']:.1f} GFLOP/s (rank 0, N = {ranks[0]})")
    print(f"{'phase':<11}{'N':>3}{'step ms':>9}{'compute':>9}{'comm':>8}{'transfer':>9}{'wait':>7}{'calls':>6}"
          f"{'bytes/step':>12}{'speed-up':>10}")
    for phase in ("pretrain", "algorithm1"):
        base = res[ranks[0]]["phases"][phase]["step_s"]
        for N in ranks:
            r = res[N]["phases"][phase]
            print(f"{phase:<11}{N:>3}{1e3 * r['step_s']:9.1f}{1e3 * (r['step_s'] - r['comm_s']):9.1f}"
                  f"{1e3 * r['comm_s']:8.2f}{1e3 * r['transfer_s']:9.2f}{1e3 * (r['comm_s'] - r['transfer_s']):7.2f}"
                  f"{r['collectives']:6d}{r['bytes']:12,d}{base / r['step_s']:10.2f}")

    if 1 not in res or 2 not in res:
        return
    alpha, beta = args.latency_us * 1e-6, args.bandwidth_gbs * 1e9
    print(f"\nmodel: compute(N) = serial + per-example x {args.batch} / N (fitted in one process at batch "
          f"{args.batch} and {args.batch // 2}); each collective a ring allreduce (latency {args.latency_us:g} us, "
          f"{args.bandwidth_gbs:g} GB/s), no wait; efficiency = step(1) / (N step(N))")
    print(f"{'phase':<11}{'serial ms':>10}{'per ex. ms':>11}" + "".join(f"{'N=' + str(n):>15}" for n in PREDICT_N))
    for phase in ("pretrain", "algorithm1"):
        full, half = res[1]["phases"][phase]["step_s"], res[1]["phases"][phase + "_half"]["step_s"]
        per_example = max(full - half, 0.0) / (args.batch - args.batch // 2)
        serial = max(full - per_example * args.batch, 0.0)
        # the buffers measured at N = 2: pretrain one (gradients and costs); algorithm1 the working-set
        # increments (8 B per example), the gradients and costs, the line-search costs (8 B per step)
        small = [8 * args.batch, 8 * 10] if phase == "algorithm1" else []
        sizes = [res[2]["phases"][phase]["bytes"] - sum(small), *small]
        cells = []
        for n in PREDICT_N:
            t = serial + per_example * args.batch / n + sum(ring_allreduce_s(b, n, alpha, beta) for b in sizes)
            cells.append(f"{1e3 * t:7.1f} ms {100 * (serial + per_example * args.batch) / (n * t):3.0f}%")
        print(f"{phase:<11}{1e3 * serial:10.1f}{1e3 * per_example:11.2f}" + "".join(f"{c:>15}" for c in cells))
    print(f"(collectives per step: pretrain 1, the gradient buffer; algorithm1 3: the working-set increments "
          f"({8 * args.batch} B), the gradient buffer, the line-search costs ({8 * 10} B))")


if __name__ == "__main__":
    main()

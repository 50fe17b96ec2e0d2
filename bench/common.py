"""Timing helpers shared by the benchmarks: median wall time and the machine's GEMM rate,
measured in the same run as the figures they normalise (these machines are noisy); the setup
lines they print first (CPU, threads, convolution algorithms)."""
import contextlib
import os
import time

import numpy as np


@contextlib.contextmanager
def threads_override(n):
    """nn.parallel's threads set to n inside the block (STRUCTNET_THREADS), restored after it."""
    from nn import parallel
    old = os.environ.get(parallel.THREADS_VAR)
    os.environ[parallel.THREADS_VAR] = str(n)
    parallel.configure()
    try:
        yield
    finally:
        if old is None:
            del os.environ[parallel.THREADS_VAR]
        else:
            os.environ[parallel.THREADS_VAR] = old
        parallel.configure()


def run_times(f, reps, warmup):
    """Seconds of each of reps calls of f(), after warmup untimed calls."""
    for _ in range(warmup):
        f()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return times


def median_time(f, reps=5, warmup=1):
    """Median seconds of f() over reps calls after warmup calls."""
    return float(np.median(run_times(f, reps, warmup)))


def best_time(f, reps=5, warmup=0):
    """Smallest seconds of f() over reps calls: the run least disturbed by other processes."""
    return min(run_times(f, reps, warmup))


def gemm_rate(n=2048, reps=10, dtype=np.float32):
    """float32 GEMM rate of NumPy's BLAS in FLOP/s (the compute floor of GEMM-based layers)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    return 2 * n ** 3 / median_time(lambda: a @ b, reps)


def conv_flops(n, in_c, out_c, k, out_h, out_w):
    """Multiply-adds x 2 of one direct convolution pass (forward, or each backward product)."""
    return 2 * n * out_c * out_h * out_w * in_c * k * k


def print_setup(entries, mode="auto"):
    """Print the CPU model, nn.parallel's thread decision and, under nn.conv_tune policy `mode`,
    the algorithm of each conv layer and pass of entries [(label, conv, HWNC shape, dtype,
    passes)] (tuned now when not cached) beside the fixed rule, with the cached times."""
    from nn import conv_tune, parallel
    conv_tune.set_policy(mode)
    print(f"CPU {conv_tune.cpu_model()}; {parallel.describe()}")
    t0 = time.perf_counter()
    chosen = conv_tune.plan(entries)
    tuned = time.perf_counter() - t0
    print(f"convolution algorithms (--conv-algorithm {mode}; cache {conv_tune.cache_path()}; "
          f"resolved in {tuned:.1f} s):")
    differ = 0
    for label, conv, shape, dtype, passes in entries:
        for p in passes:
            a, fixed = chosen[label][p], conv.fixed_algorithm(np)
            differ += a != fixed
            e = conv_tune.cached(conv, shape, dtype, p)
            ms = ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(e["ms"].items())) if e and mode == "auto" else ""
            print(f"  {label:<22}{p:<13}{a:<8}{'' if a == fixed else '(fixed rule: ' + fixed + ')':<22}{ms}")
    print(f"  {'the fixed rule in every pass' if not differ else f'{differ} pass(es) differ from the fixed rule'}")
    return chosen

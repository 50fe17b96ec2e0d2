"""FFT libraries on the FFT convolution's own transforms (prints; asserts nothing).

    python bench/bench_fftlib.py                      # paper and cpu presets, batch 128
    python bench/bench_fftlib.py --batch 64 --reps 7

For each conv layer of the presets (nn.conv's FFT sizes: good_fft_size of the padded input), the
forward rfft2 of the input block (H, W, N, C) and the inverse irfft2 of the output spectra
(H, W//2+1, N, out_c), over axes (0, 1), by scipy.fft (pocketfft, what nn.conv uses) and by each
candidate that is installed: ducc0 (pocketfft's successor), pyfftw (FFTW, plans made with
FFTW_MEASURE before timing), mkl_fft. Each is timed best-of-reps, the libraries alternating in
two rounds, with nn.parallel's threads; the ratio is scipy's time / the candidate's (> 1: the
candidate is faster). Candidates not installed are listed and skipped: none is a dependency.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import scipy.fft  # noqa: E402

from bench.common import best_time  # noqa: E402
from nn import conv_tune, parallel  # noqa: E402
from nn.conv import good_fft_size  # noqa: E402
from structlearn.network import PRESETS, ConvStack  # noqa: E402


def candidates(threads):
    """{name: (forward(x) -> X, inverse(X, size) -> x)} of the installed libraries, and the missing names."""
    libs, missing = {"scipy": (lambda x: scipy.fft.rfft2(x, axes=(0, 1), workers=threads),
                               lambda X, s: scipy.fft.irfft2(X, s=s, axes=(0, 1), workers=threads))}, []
    try:
        import ducc0
        libs["ducc0"] = (lambda x: ducc0.fft.r2c(x, axes=(0, 1), nthreads=threads),
                         lambda X, s: ducc0.fft.c2r(X, axes=(0, 1), lastsize=s[1], forward=False, inorm=2,
                                                    nthreads=threads))
    except ImportError:
        missing.append("ducc0")
    try:
        import pyfftw
        plans = {}

        def plan(kind, a, s=None):
            key = (kind, a.shape, a.dtype, s)
            if key not in plans:
                build = pyfftw.builders.rfft2 if kind == "f" else pyfftw.builders.irfft2
                extra = {} if s is None else {"s": s}
                plans[key] = build(a.copy(), axes=(0, 1), threads=threads, planner_effort="FFTW_MEASURE", **extra)
            return plans[key]
        libs["pyfftw"] = (lambda x: plan("f", x)(x), lambda X, s: plan("i", X, s)(X))
    except ImportError:
        missing.append("pyfftw")
    try:
        import mkl_fft
        libs["mkl_fft"] = (lambda x: mkl_fft.rfft2(x, axes=(0, 1)),
                           lambda X, s: mkl_fft.irfft2(X, s=s, axes=(0, 1)))
    except ImportError:
        missing.append("mkl_fft")
    return libs, missing


def layers(batch):
    """[(label, FFT size (h, w), in_c, out_c)] of the presets' conv layers (valid convolutions)."""
    out = []
    for preset in ("paper", "cpu"):
        cfg = PRESETS[preset]
        size, c = cfg.input_size, 3
        for conv in ConvStack(cfg).convs:
            fft = good_fft_size(size + 2 * conv.ph)
            out.append((f"{preset} {conv.name} {size}x{size}x{batch}x{c}", (fft, fft), c, conv.out_c))
            size, c = conv.output_shape(size, size)[0] // 2, conv.out_c
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=128, help="images per block (default: %(default)s)")
    parser.add_argument("--reps", type=int, default=5, help="timed calls per library and round (default: %(default)s)")
    args = parser.parse_args()
    if args.batch < 1 or args.reps < 1:
        parser.error("--batch and --reps must be at least 1")
    threads = parallel.threads()
    print(f"CPU {conv_tune.cpu_model()}; {parallel.describe()}; numpy {np.__version__}")
    libs, missing = candidates(threads)
    print(f"scipy {scipy.__version__}; candidates: " + ", ".join(
        [f"{n} {sys.modules[n].__version__}" for n in libs if n != "scipy"] + [f"{n} not installed" for n in missing]))
    rng = np.random.default_rng(0)
    names = list(libs)
    print(f"{'layer':<28}{'pass':<8}" + "".join(f"{n + ' ms':>12}" for n in names)
          + "".join(f"{'scipy/' + n:>14}" for n in names[1:]) + f"{'max rel err':>13}")
    for label, size, c_in, c_out in layers(args.batch):
        x = rng.standard_normal(size + (args.batch, c_in), dtype=np.float32)
        Y = scipy.fft.rfft2(rng.standard_normal(size + (args.batch, c_out), dtype=np.float32), axes=(0, 1))
        for kind, data in (("rfft2", x), ("irfft2", Y)):
            run = {n: (lambda f=libs[n][0]: f(data)) if kind == "rfft2" else (lambda f=libs[n][1]: f(data, size))
                   for n in names}
            ref = run["scipy"]()
            err = max(float(np.abs(run[n]() - ref).max() / np.abs(ref).max()) for n in names)
            times = {n: float("inf") for n in names}
            for order in (names, names[::-1]):       # two rounds, alternating
                for n in order:
                    times[n] = min(times[n], best_time(run[n], args.reps, warmup=1))
            print(f"{label:<28}{kind:<8}" + "".join(f"{times[n] * 1e3:12.1f}" for n in names)
                  + "".join(f"{times['scipy'] / times[n]:14.2f}" for n in names[1:]) + f"{err:13.1e}")


if __name__ == "__main__":
    main()

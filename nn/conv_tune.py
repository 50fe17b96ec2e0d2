"""Measured choice of the convolution algorithm per layer shape and pass (cuDNN's benchmark mode).

Conv2D(algorithm="auto") asks `choose(layer, x_shape, dtype, pass_, xp)` for each pass:
"forward", "weight_grad" (gW) and "input_grad" (gx). On NumPy arrays, for stride 1, the first call
of a shape times both algorithms (`_best_times`: the smallest of 4 calls or more each) and keeps
the faster, but the fixed rule's unless the other wins by TUNE_MARGIN (20%: a near tie is worth
neither other rounding than the fixed rule's nor a choice that flips between sessions). Each pass
is timed as it runs after the ones before it: the weight gradient on the cache of the chosen
forward (an fft forward keeps the input spectra), the input gradient beside the chosen weight
gradient (an fft pair shares the output gradient's spectra), so its time is the backward's time
beyond the weight gradient's. The choices are cached per machine in a JSON file (`cache_path()`),
keyed by CPU model, NumPy and SciPy versions and threads (`machine_key()`).

The fixed rule (Conv2D.fixed_algorithm: fft for stride 1 on the CPU, else im2col) is the answer
on CuPy arrays, with STRUCTNET_CONV_TUNE=0, and under the policy "fixed". `set_policy` sets the
process-wide policy (auto, fixed, fft, im2col) and pins recorded choices (a resumed run); `used()`
is every choice made since, for the run's record.

The default policy is "fixed", as PyTorch leaves cudnn.benchmark off: measured on a loaded 2-core
AMD EPYC, conv3's choice (11x11 input, 32 channels) flipped between fft and im2col from one session
to the next with the load at the moment of timing, and a flip changes a run's rounding, so its
figures. "auto" (`--conv-algorithm auto`) is the opt-in for speed on a machine of one's own.

    python -m nn.conv_tune --show            # the cached table of this machine (--all: every machine)
    python -m nn.conv_tune --tune cpu --batch 64,128   # tune a network preset's conv stack
    python -m nn.conv_tune --clear
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

from . import parallel

PASSES = ("forward", "weight_grad", "input_grad")
MODES = ("auto", "fixed", "fft", "im2col")
ALGORITHMS = ("fft", "im2col")
TUNE_REPS = 2               # timed calls per candidate and block (two blocks) at least; the smallest counts
TUNE_SECONDS = 0.1          # ... and calls until a block took this long (small layers: more calls)
TUNE_MAX_REPS = 20
TUNE_ABANDON = 3.0          # a candidate this many times slower than another after one block is not timed again
TUNE_MARGIN = 0.2           # the fixed rule's algorithm stays unless the other is faster by more than this:
                            # on a loaded 2-core EPYC one layer's times spread by +-20% between sessions
CACHE_DIR_VAR, TUNE_VAR = "STRUCTNET_CACHE_DIR", "STRUCTNET_CONV_TUNE"
CACHE_FORMAT = 1

_policy = {"mode": "fixed", "pinned": {}}   # the default: reproducible
_used = {}                  # shape key -> {pass: algorithm} since set_policy
_cache = {"path": None, "data": None, "writable": True, "warned": set()}


# ---------------------------------------------------------------- keys
def cpu_model():
    """The CPU's model name (/proc/cpuinfo), else platform.processor(), else "unknown CPU"."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_key():
    """CPU model, library versions and threads: the choices hold for this combination."""
    import scipy
    return f"{cpu_model()} | numpy {np.__version__} | scipy {scipy.__version__} | {parallel.threads()} threads"


def shape_key(layer, x_shape, dtype):
    """'HWNC 56x56x64x3 -> 16, k 5x5, s 1x1, p 0x0, float32' for a layer on an input of x_shape."""
    return (f"HWNC {'x'.join(map(str, x_shape))} -> {layer.out_c}, k {layer.kh}x{layer.kw}, "
            f"s {layer.sy}x{layer.sx}, p {layer.ph}x{layer.pw}, {np.dtype(dtype).name}")


# ---------------------------------------------------------------- policy
def tuning_enabled():
    return os.environ.get(TUNE_VAR, "1").strip() not in ("0", "false", "no", "off")


def set_policy(mode="fixed", pinned=None):
    """Process-wide: mode (MODES; fft falls back to im2col where the stride is not 1) and pinned
    {shape key: {pass: algorithm}} choices that win over it. Clears used()."""
    if mode not in MODES:
        raise ValueError(f"unknown convolution algorithm policy {mode!r}: expected one of {MODES}")
    pinned = pinned or {}
    if not isinstance(pinned, dict) or not all(isinstance(v, dict) and all(
            p in PASSES and a in ALGORITHMS for p, a in v.items()) for v in pinned.values()):
        raise ValueError(f"not a record of convolution algorithms {{shape: {{pass: algorithm}}}}: {pinned!r:.200}")
    _policy.update(mode=mode, pinned={k: dict(v) for k, v in pinned.items()})
    _used.clear()


def used():
    """{shape key: {pass: algorithm}} of every choice made since set_policy (a copy)."""
    return {k: dict(v) for k, v in _used.items()}


def record():
    """The pinned choices updated with used(): what a run records so that a resume repeats it."""
    out = {k: dict(v) for k, v in _policy["pinned"].items()}
    for k, passes in _used.items():
        out.setdefault(k, {}).update(passes)
    return out


def choose(layer, x_shape, dtype, pass_, xp):
    """The algorithm of `pass_` for Conv2D `layer` on an input of x_shape (HWNC) and dtype."""
    key = shape_key(layer, x_shape, dtype)
    stride1 = (layer.sy, layer.sx) == (1, 1)
    pinned = _policy["pinned"].get(key, {}).get(pass_)
    mode = _policy["mode"]
    if pinned in ALGORITHMS and (stride1 or pinned == "im2col"):
        algorithm = pinned
    elif mode in ALGORITHMS:
        algorithm = mode if stride1 else "im2col"
    elif mode == "fixed" or xp is not np or not stride1 or not tuning_enabled():
        algorithm = layer.fixed_algorithm(xp)
    else:
        algorithm = _tuned(layer, key, x_shape, dtype, pass_)
    _used.setdefault(key, {})[pass_] = algorithm
    return algorithm


# ---------------------------------------------------------------- the cache file
def cache_path():
    """$STRUCTNET_CACHE_DIR/conv_algorithms.json, default ~/.cache/structnet/ (or $XDG_CACHE_HOME)."""
    base = os.environ.get(CACHE_DIR_VAR) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "structnet")
    return os.path.join(base, "conv_algorithms.json")


def _warn(what, line):
    if what not in _cache["warned"]:
        _cache["warned"].add(what)
        print(f"warning: {line}", file=sys.stderr)


def _read(path):
    """The cache file's content {"format", "machines": {machine: {shape: {pass: entry}}}} (parts
    of another structure dropped); a fresh one when missing, and when unreadable after one
    warning line."""
    fresh = {"format": CACHE_FORMAT, "machines": {}}
    try:
        with open(path) as f:
            data = json.load(f)
        if not (isinstance(data, dict) and data.get("format") == CACHE_FORMAT
                and isinstance(data.get("machines"), dict)):
            raise ValueError(f"not a convolution algorithm cache of format {CACHE_FORMAT}")
    except (FileNotFoundError, NotADirectoryError):     # nothing cached (yet)
        return fresh
    except (OSError, ValueError) as err:    # JSONDecodeError and UnicodeDecodeError are ValueErrors
        _warn(("read", path), f"{path}: unreadable convolution algorithm cache ({type(err).__name__}: {err}); "
                              "measuring again")
        return fresh
    machines = {m: {k: {p: e for p, e in passes.items() if p in PASSES and _valid(e)}
                    for k, passes in table.items() if isinstance(passes, dict)}
                for m, table in data["machines"].items() if isinstance(table, dict)}
    return {"format": CACHE_FORMAT, "machines": machines}


def _data():
    path = cache_path()
    if _cache["path"] != path:
        _cache.update(path=path, data=_read(path), writable=True)
    return _cache["data"]


def _valid(entry):
    return isinstance(entry, dict) and entry.get("algorithm") in ALGORITHMS


def _store(mkey, key, pass_, entry):
    """Record an entry in memory and in the file (re-read first, so that other processes'
    entries survive; written atomically). An unwritable file: one warning, memory only."""
    _data()["machines"].setdefault(mkey, {}).setdefault(key, {})[pass_] = entry
    if not _cache["writable"]:
        return
    path = _cache["path"]
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        disk = _read(path)
        for m, table in _cache["data"]["machines"].items():
            for k, passes in table.items():
                disk["machines"].setdefault(m, {}).setdefault(k, {}).update(passes)
        fd, tmp = tempfile.mkstemp(prefix=".conv_algorithms.", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(disk, f, indent=1, sort_keys=True)
            os.chmod(tmp, 0o644)    # mkstemp's 0600 would hide it from the machine's other users
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        _cache["data"] = disk
    except OSError as err:
        _cache["writable"] = False
        _warn(("write", path), f"cannot write the convolution algorithm cache {path} ({err}); "
                               "the measured choices are kept in memory")


def _tuned(layer, key, x_shape, dtype, pass_):
    mkey = machine_key()
    entry = _data()["machines"].get(mkey, {}).get(key, {}).get(pass_)
    if entry is None:
        entry = measure(layer, x_shape, dtype, pass_)
        _store(mkey, key, pass_, entry)
    return entry["algorithm"]


def cached(layer, x_shape, dtype, pass_):
    """This machine's cache entry {"algorithm", "ms"} of a layer shape and pass, or None."""
    return _data()["machines"].get(machine_key(), {}).get(shape_key(layer, x_shape, dtype), {}).get(pass_)


def reload():
    """Forget the in-memory copy of the cache file and the warnings given (read again on next use)."""
    _cache.update(path=None, data=None, writable=True, warned=set())


def clear():
    """Delete the cache file and forget its content. Returns the path."""
    path = cache_path()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    reload()
    return path


# ---------------------------------------------------------------- measuring
def _best_times(calls):
    """{name: smallest seconds of calls[name]()}: each timed in two blocks, in the order given and
    then reversed (fair under a drifting load), each of TUNE_REPS calls or more (until
    TUNE_SECONDS, at most TUNE_MAX_REPS), after one untimed call where the candidate changes (it
    pays the change: OpenBLAS threads still spinning after a large GEMM, cold caches). An
    algorithm over TUNE_ABANDON x another's time is not timed further."""
    best, previous = dict.fromkeys(calls, float("inf")), None

    def beaten(name):
        rivals = [best[a] for a in ALGORITHMS if a in calls and a != name]
        return name in ALGORITHMS and bool(rivals) and TUNE_ABANDON * min(rivals) < best[name] < float("inf")
    for name in list(calls) + list(reversed(calls)):
        if beaten(name):
            continue
        f = calls[name]
        if name != previous:
            f()
        previous, n, t_block = name, 0, time.perf_counter()
        while n < TUNE_REPS or (n < TUNE_MAX_REPS and time.perf_counter() - t_block < TUNE_SECONDS):
            t0 = time.perf_counter()
            f()
            best[name] = min(best[name], time.perf_counter() - t0)
            n += 1
            if beaten(name):
                break
    return best


def measure(layer, x_shape, dtype, pass_):
    """{"algorithm": the choice, "ms": {algorithm: milliseconds}} of `pass_` on random data of the
    shape, timed as the module docstring says (the passes before it chosen first). The choice is
    the fixed rule's algorithm unless the other is faster by more than TUNE_MARGIN."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    W = (0.1 * rng.standard_normal((layer.out_c, layer.in_c, layer.kh, layer.kw))).astype(dtype)
    b = np.zeros(layer.out_c, dtype)
    if pass_ == "forward":
        times = _best_times({a: (lambda a=a: layer.run_forward(a, x, W, b)) for a in ALGORITHMS})
    else:
        y, cache = layer.run_forward(choose(layer, x_shape, dtype, "forward", np), x, W, b)
        gy = rng.standard_normal(y.shape).astype(dtype)
        if pass_ == "weight_grad":
            times = _best_times({a: (lambda a=a: layer.run_backward(cache, gy, W, None, a)) for a in ALGORITHMS})
        else:
            gw = choose(layer, x_shape, dtype, "weight_grad", np)
            times = _best_times({"base": lambda: layer.run_backward(cache, gy, W, None, gw),
                                 **{a: (lambda a=a: layer.run_backward(cache, gy, W, a, gw)) for a in ALGORITHMS}})
            base = times.pop("base")
            times = {a: max(0.0, t - base) for a, t in times.items()}
    fixed = layer.fixed_algorithm(np)
    other = min((a for a in ALGORITHMS if a != fixed), key=times.get)
    choice = other if times[other] < (1 - TUNE_MARGIN) * times[fixed] else fixed
    return {"algorithm": choice, "ms": {a: round(t * 1e3, 3) for a, t in times.items()}}


# ---------------------------------------------------------------- command line
def format_table(table):
    """Lines of a {shape key: {pass: entry}} table: shape, pass, choice, each candidate's ms."""
    lines = [f"{'layer shape (input HWNC -> out channels)':<58}{'pass':<13}{'choice':<8}"
             + "".join(f"{a + ' ms':>11}" for a in ALGORITHMS)]
    for key in sorted(table):
        for pass_ in PASSES:
            e = table[key].get(pass_)
            if _valid(e):
                ms = e.get("ms", {})
                lines.append(f"{key:<58}{pass_:<13}{e['algorithm']:<8}"
                             + "".join(f"{ms[a]:11.2f}" if isinstance(ms.get(a), (int, float)) else f"{'-':>11}"
                                       for a in ALGORITHMS))
    return lines


def plan(entries, xp=np):
    """Resolve (tuning where needed) entries [(label, conv, x_shape HWNC, dtype, passes)] ->
    {label: {pass: algorithm}}."""
    return {label: {p: conv.resolved_algorithm(xp, shape, dtype, p) for p in passes}
            for label, conv, shape, dtype, passes in entries}


def tune_preset(preset, batches, dtype=np.float32):
    """plan() of a structlearn.network preset's conv stack, every pass of training, per batch size."""
    from structlearn.network import PRESETS, ConvStack
    stack = ConvStack(PRESETS[preset])
    return plan([e for n in batches for e in stack.conv_passes(n, dtype)])


def describe_plan(chosen):
    """One line per entry of plan()'s result: 'conv1 56x56x64x3: forward fft, weight_grad fft'."""
    return [f"{name}: " + ", ".join(f"{p} {a}" for p, a in passes.items()) for name, passes in chosen.items()]


def main(argv=None):
    from .backend import keep_freed_memory
    keep_freed_memory()     # as the scripts do: timings without the page faults of returned memory
    ap = argparse.ArgumentParser(prog="python -m nn.conv_tune", description=__doc__.splitlines()[0])
    ap.add_argument("--show", action="store_true", help="print the cached choices of this machine")
    ap.add_argument("--all", action="store_true", help="with --show: of every machine in the file")
    ap.add_argument("--clear", action="store_true", help="delete the cache file")
    ap.add_argument("--tune", metavar="PRESET", help="tune a network preset's conv stack (cpu, paper, tiny)")
    ap.add_argument("--batch", default="64,128",
                    help="with --tune: batch sizes, comma-separated (default: %(default)s)")
    args = ap.parse_args(argv)
    if not (args.show or args.clear or args.tune):
        ap.error("nothing to do: pass --show, --tune PRESET or --clear")
    if args.clear:
        print(f"removed {clear()}")
    if args.tune:
        if not tuning_enabled():
            ap.error(f"{TUNE_VAR}={os.environ[TUNE_VAR]} disables tuning")
        t0 = time.perf_counter()
        lines = describe_plan(tune_preset(args.tune, [int(b) for b in args.batch.split(",") if b.strip()]))
        print(f"preset {args.tune} tuned in {time.perf_counter() - t0:.1f} s:")
        print("\n".join("  " + line for line in lines))
    if args.show:
        print(f"cache {cache_path()}; {parallel.describe()}")
        machines = _data()["machines"]
        mkey = machine_key()
        for m in (sorted(machines) if args.all else [mkey]):
            print(f"\n{m}{'  (this machine)' if m == mkey else ''}")
            table = machines.get(m) if isinstance(machines.get(m), dict) else {}
            print("\n".join(format_table(table)) if table else "  (nothing cached)")
    return 0


if __name__ == "__main__":
    from nn import conv_tune     # the module Conv2D consults, not this __main__ copy
    sys.exit(conv_tune.main())

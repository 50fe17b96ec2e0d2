#!/usr/bin/env python
"""The default run and the ablations of Table 1 (StructNet*, lambda = 0) and Table 3 over several
seeds, and their table of mean +- std.

    python run_ablations.py run --seeds 0,1,2 --out runs/ablations        # trains and evaluates
    python run_ablations.py table runs/ablations                          # the README's table
    python run_ablations.py findings runs/ablations                       # REPRODUCTION.md's findings
    python run_ablations.py run --variants default,lam0 -- --data h36m.h5 # flags after -- go to run_train.py
    python run_ablations.py run --eval-flags "--max-images 960"           # and these to run_eval.py

For every seed, `run` pre-trains once (run_train.py --stage pretrain --seed S), then restarts
Algorithm 1 from that network for every variant (run_train.py --stage structnet --seed S), and
evaluates each on the test subjects (run_eval.py). It prints every command before running it; a
variant whose results.json exists is skipped, so an interrupted `run` continues where it stopped.
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np

# variant name -> (run_train.py flags, run_eval.py modes)
VARIANTS = {
    "default": ([], "max,avg,apf,pred,hml"),
    "lam0": (["--lam", "0"], "max,avg,pred"),                    # StructNet* of Table 1
    "1layer": (["--pose-embedding", "1layer"], "max,avg"),       # Table 3
    "random1": (["--pose-embedding", "random1"], "max,avg"),
    "raw": (["--pose-embedding", "raw"], "max,avg"),
    "paper": (["--recipe", "paper"], "max,avg,pred"),             # dropout 0.75, line search + SGD
}
LABELS = {"default": "StructNet (2-layer pose embedding, λ = 1), the default",
          "lam0": "StructNet* (λ = 0, no auxiliary task)", "1layer": "Pose embedding: 1 layer",
          "random1": "Pose embedding: 1 layer, fixed random weights", "raw": "Pose embedding: none (raw 51-d pose)",
          "paper": "The paper's optimisation rules (--recipe paper)"}
METHODS = {"max": "Max", "avg": "Avg", "apf": "Avg-APF", "pred": "Pred", "hml": "DconvMP-HML"}


class AblationError(Exception):
    """A failed step or unreadable results; the message names it."""


def run_dir(out, variant, seed):
    return os.path.join(out, f"{variant}_s{seed}")


def commands(out, variant, seed, train_flags=(), eval_flags=(), python=sys.executable):
    """The run_train.py and run_eval.py command lines (lists) of one variant and seed."""
    flags, modes = VARIANTS[variant]
    d = run_dir(out, variant, seed)
    pre = os.path.join(out, f"pretrain_s{seed}", "pretrain_model.npz")
    train = [python, "run_train.py", "--stage", "structnet", "--seed", str(seed), "--pretrained", pre,
             "--out", d, "--no-progress", *train_flags, *flags]
    evaluate = [python, "run_eval.py", "--run", d, "--mode", modes, "--json", os.path.join(d, "results.json"),
                "--no-progress", *eval_flags]
    return train, evaluate


def _call(cmd, log):
    print("+ " + " ".join(cmd), flush=True)
    with open(log, "a") as f:
        if subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=os.path.dirname(os.path.abspath(__file__))):
            raise AblationError(f"failed: {' '.join(cmd)} (output in {log})")


def run(out, seeds, variants, train_flags=(), eval_flags=()):
    """Train and evaluate every (seed, variant) not done yet; the logs go to <run>.txt."""
    os.makedirs(out, exist_ok=True)
    for seed in seeds:
        pre_dir = os.path.join(out, f"pretrain_s{seed}")
        if not os.path.exists(os.path.join(pre_dir, "pretrain_model.npz")):
            shutil.rmtree(pre_dir, ignore_errors=True)
            _call([sys.executable, "run_train.py", "--stage", "pretrain", "--seed", str(seed), "--out", pre_dir,
                   "--no-progress", *train_flags], pre_dir + ".txt")
        for variant in variants:
            d = run_dir(out, variant, seed)
            if os.path.exists(os.path.join(d, "results.json")):
                continue
            shutil.rmtree(d, ignore_errors=True)
            train, evaluate = commands(out, variant, seed, train_flags, eval_flags)
            _call(train, d + ".txt")
            # DconvMP-HML is the pre-training network's head: run_eval.py finds it beside the model
            shutil.copyfile(os.path.join(pre_dir, "pretrain_model.npz"), os.path.join(d, "pretrain_model.npz"))
            _call(evaluate, d + ".txt")


def summarise(results):
    """The figures of one run_eval.py --json list: {max, avg, ...: MPJPE all frames (mm),
    align: share within 30 mm (%), median_mm, floor (mm), A_share_<p>: Avg error at each swept A}."""
    row = {}
    for entry in results:
        if entry.get("sweep"):
            row[f"sweep_{entry['A_share'] * 100:.2f}%"] = entry["mpjpe_all_frames"]
        else:
            row[entry["mode"]] = entry["mpjpe_all_frames"]
            row.setdefault("actions", {})[entry["mode"]] = {a: v["mean"] for a, v in entry["mpjpe"].items()}
    ctx = results[0]["context"]
    if ctx.get("train_alignment"):
        row["align"] = 100 * ctx["train_alignment"]["share_30mm"]
        row["median_mm"] = ctx["train_alignment"]["median_mm"]
    row["floor"] = ctx["bank_floor"]["mpjpe_all_frames"]
    return row


def collect(out):
    """{variant: {seed: summarise(results)}} of every results.json under out."""
    table = {}
    for name in sorted(os.listdir(out)):
        variant, _, seed = name.rpartition("_s")
        path = os.path.join(out, name, "results.json")
        if variant in VARIANTS and seed.isdigit() and os.path.exists(path):
            try:
                with open(path) as f:
                    table.setdefault(variant, {})[int(seed)] = summarise(json.load(f))
            except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
                raise AblationError(f"{path}: unreadable results ({e})") from None
    if not table:
        raise AblationError(f"{out}: no <variant>_s<seed>/results.json of the variants {', '.join(VARIANTS)}")
    return table


def mean_std(values):
    v = np.asarray(values, float)
    return v.mean(), (v.std(ddof=1) if len(v) > 1 else 0.0)


def fmt(values, digits=1):
    if not values:
        return "–"
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}"


def markdown(table):
    """The mean ± std (sample std over seeds) table, one row per variant, and the seeds used."""
    cols = ["max", "avg", "apf", "pred", "hml", "align", "median_mm"]
    names = {**METHODS, "align": "Alignment ≤ 30 mm (%)", "median_mm": "Median (mm)"}
    present = [c for c in cols if any(c in r for runs in table.values() for r in runs.values())]
    lines = ["| Variant | seeds | " + " | ".join(names[c] for c in present) + " |",
             "|---|---|" + "---|" * len(present)]
    for variant in VARIANTS:
        runs = table.get(variant)
        if not runs:
            continue
        cells = [fmt([r[c] for r in runs.values() if c in r]) for c in present]
        lines.append(f"| {LABELS[variant]} | {','.join(map(str, sorted(runs)))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(values):
    m, sd = mean_std(values)
    return f"{m:+.1f} ± {sd:.1f}%" if len(values) > 1 else f"{m:+.1f}%"


def _per_seed(values):
    return ", ".join(f"{v:+.1f}%" for v in values)


def _lower_on(runs, a, b):
    """Per seed: on how many actions method a's error is below method b's, as 'k/n'."""
    return ", ".join(f"{sum(r['actions'][a][x] < r['actions'][b][x] for x in r['actions'][a])}/{len(r['actions'][a])}"
                     for r in runs)


def findings(table):
    """The paper's findings (Sec. 5.4, Tables 1 and 3, Sec. 6) measured from a run directory's table:
    one markdown row per finding, with the mean ± std over seeds and the per-seed (paired) values.
    Relative figures are 100 (a / b - 1), seed by seed, between the two variants of the same seed."""
    default = table.get("default")
    if not default:
        raise AblationError("findings need the default variant")
    seeds = sorted(default)
    runs = [default[s] for s in seeds]
    lines = [f"Seeds {','.join(map(str, seeds))}; mean ± sample std over them; per seed in brackets.", "",
             "| # | Finding | Measured |", "|---|---|---|"]

    def rel(a, b, rows=runs, rows_b=runs):
        return [100 * (ra[a] / rb[b] - 1) for ra, rb in zip(rows, rows_b)]

    if all("avg" in r and "max" in r for r in runs):
        v = rel("avg", "max")
        lines.append(f"| 1 | Avg(A) below Max | {_pct(v)} ({_per_seed(v)}); lower on {_lower_on(runs, 'avg', 'max')} actions |")
    sweep = sorted({k for r in runs for k in r if k.startswith("sweep_")}, key=lambda k: float(k[6:-1]))
    if sweep and all(all(k in r for k in sweep) for r in runs):
        means = [fmt([r[k] for r in runs]) + f" ({k[6:]})" for k in sweep]
        lowest = [min(sweep, key=lambda k: r[k])[6:] for r in runs]
        lines.append(f"| 2 | Figure 3: Avg against A (share of the bank) | {'; '.join(means)}; lowest at {', '.join(lowest)} |")
    if all("apf" in r for r in runs):
        v = rel("apf", "avg")
        lines.append(f"| 3 | Avg-APF against Avg | {_pct(v)} ({_per_seed(v)}) |")
    if all("hml" in r for r in runs):
        v = rel("avg", "hml")
        text = f"Avg {_pct(v)} ({_per_seed(v)}), lower on {_lower_on(runs, 'avg', 'hml')} actions"
        if all("apf" in r for r in runs):
            v = rel("apf", "hml")
            text += f"; Avg-APF {_pct(v)} ({_per_seed(v)}), lower on {_lower_on(runs, 'apf', 'hml')} actions"
        lines.append(f"| 4 | StructNet against DconvMP-HML | {text} |")
    lam0 = table.get("lam0", {})
    paired = [s for s in seeds if s in lam0]
    if paired:
        a, b = [lam0[s] for s in paired], [default[s] for s in paired]
        vm, va = rel("max", "max", a, b), rel("avg", "avg", a, b)
        text = f"λ = 0 against λ = 1: Max {_pct(vm)} ({_per_seed(vm)}), Avg {_pct(va)} ({_per_seed(va)})"
        if all("pred" in r and "hml" in r for r in runs):
            v = rel("pred", "hml")
            text += f"; Pred against DconvMP-HML {_pct(v)}"
        lines.append(f"| 5 | The auxiliary task | {text} |")
    order = ["default", "1layer", "random1", "raw"]
    full = [s for s in seeds if all(s in table.get(v, {}) for v in order)]
    if full:
        names = {"default": "2-layer", "1layer": "1 layer", "random1": "1 random layer", "raw": "raw pose"}
        means = {v: mean_std([table[v][s]["max"] for s in full])[0] for v in order}
        by_mean = " < ".join(names[v] for v in sorted(order, key=means.get))
        held = sum(sorted(order, key=lambda v: table[v][s]["max"]) == order for s in full)
        lines.append(f"| 6 | Table 3 (Max): 2-layer < 1 layer < 1 random layer < raw pose | means: {by_mean}; "
                     f"the full order in {held} of {len(full)} seeds |")
    if all("align" in r for r in runs):
        lines.append(f"| Sec. 6 | Training alignment: max-score pose within 30 mm | "
                     f"{fmt([r['align'] for r in runs])}% (median {fmt([r['median_mm'] for r in runs])} mm) |")
    if all("avg" in r for r in runs):
        lines.append(f"| – | Avg against the bank floor | {fmt([r['avg'] / r['floor'] for r in runs], 2)}× "
                     f"(floor {fmt([r['floor'] for r in runs])} mm) |")
    return "\n".join(lines)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train and evaluate every seed and variant")
    r.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: %(default)s)")
    r.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma-separated among " + ", ".join(VARIANTS) + " (default: all)")
    r.add_argument("--out", default="runs/ablations", help="directory (default: %(default)s)")
    r.add_argument("--eval-flags", default="", help="more run_eval.py flags for every evaluation, as one string")
    r.add_argument("train_flags", nargs="*", help="after --: more run_train.py flags for every run")
    t = sub.add_parser("table", help="print the mean ± std table of a run directory")
    t.add_argument("out", help="the --out of `run`")
    t.add_argument("--json", metavar="FILE", help="also write {variant: {seed: figures}}")
    f = sub.add_parser("findings", help="print the paper's findings measured in a run directory (REPRODUCTION.md)")
    f.add_argument("out", help="the --out of `run`")
    return p


def parse_seeds(text, parser):
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        parser.error(f"--seeds must be comma-separated non-negative integers, got {text!r}")
    return seeds


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            variants = [v.strip() for v in args.variants.split(",") if v.strip()]
            unknown = [v for v in variants if v not in VARIANTS]
            if unknown or not variants:
                parser.error(f"--variants: unknown {', '.join(unknown) or '(none given)'}; "
                             f"choose among {', '.join(VARIANTS)}")
            run(args.out, parse_seeds(args.seeds, parser), variants, args.train_flags, shlex.split(args.eval_flags))
            print(markdown(collect(args.out)))
        elif args.command == "findings":
            print(findings(collect(args.out)))
        else:
            table = collect(args.out)
            print(markdown(table))
            if args.json:
                from data.files import write_text_atomic
                write_text_atomic(args.json, json.dumps(table, indent=1) + "\n")
    except AblationError as e:
        print(f"run_ablations.py: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"run_ablations.py: error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

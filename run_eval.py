#!/usr/bin/env python
"""Evaluate a trained StructNet on the test subjects: Table 1 (MPJPE per action, mean (std)),
P-MPJPE, N-MPJPE, best-of-k, the training-set alignment statistic, Figures 3-4, multiple
hypotheses, retrieval (Hit@k) and a VideoPose3D-style export.

    python run_eval.py                                  # runs/latest, S9 and S11, every mode
    python run_eval.py --mode apf --A 500
    python run_eval.py --mode max,avg,apf,pred --json results.json
    python run_eval.py --sweep-A auto --figures figs/     # Figure 3 at 0.05% ... 5% of the bank
    python run_eval.py --export-topk 10 topk.npz --max-images 500
    python run_eval.py --retrieval --export-vp3d preds.npz
    python run_eval.py --export-vp3d-world preds_world.npz   # world coordinates, as data_3d_h36m.npz
    python run_eval.py --mode apf --export-bvh bvh/            # the APF poses as BVH, one file per sequence

Modes: max (StructNet-Max), avg (StructNet-Avg(A)), apf (StructNet-Avg(A)-APF), pred
(StructNet-Pred), hml (DconvMP-HML, the pre-training network of the same run) are the paper's;
ik (StructNet-Avg(A)-IK: the Avg(A) pose through the test subject's inverse/forward kinematics)
is ours. docs/eval.md describes the tables, the JSON and the figures.
"""
import argparse
import sys

from apf import APFConfig
from data import flags, h36m
from nn import comm, conv_tune
from nn.backend import keep_freed_memory
from structlearn.evaluate import MODES, PREFERRED, SWEEP_SHARES, parse_modes
from structlearn.protocol import EvalConfig, run_evaluation
from structlearn.trained_run import exit_status

D = EvalConfig()
DEFAULT_MODES = ",".join(D.modes)


def sweep_arg(text):
    """--sweep-A: 'auto' (the shares structlearn.evaluate.SWEEP_SHARES of the bank) or a list of A."""
    return "auto" if text.strip().lower() == "auto" else flags.int_list(text)


def best_of_arg(text):
    """--best-of: comma-separated k, or '' for none."""
    return flags.int_list(text) if text.strip() else ()


def build_parser():
    apf = D.apf
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model and data")
    g.add_argument("--run", default=D.run,
                   help="run directory of run_train.py (model.npz, pretrain_model.npz) or a model.npz "
                        "(default: %(default)s)")
    g.add_argument("--data", default=D.data, help="HDF5 dataset (default: the file the model was trained on)")
    g.add_argument("--subjects", default=",".join(D.subjects),
                   help="test subjects, comma-separated, or test/train/all (default: %(default)s)")
    g.add_argument("--actions", default="", help="test actions, comma-separated (default: all in the file)")
    g.add_argument("--max-images", type=flags.non_negative_int, default=D.max_images,
                   help="evaluate an evenly spaced subset of at most N test images (default: 0 = all)")
    g.add_argument("--device", default=D.device, choices=("cpu", "gpu"), help="(default: %(default)s)")
    g.add_argument("--batch-size", type=flags.positive_int, default=D.batch_size,
                   help="test images per batch (default: %(default)s)")
    g.add_argument("--bank-chunk", type=flags.positive_int, default=D.bank_chunk,
                   help="bank poses scored per GEMM; memory is batch x chunk scores (default: %(default)s)")
    g.add_argument("--no-cache", action="store_true",
                   help="neither read nor write the pose-bank embedding cache (<model>.bank.npz)")
    g.add_argument("--shard-bank", action="store_true",
                   help="under mpiexec: every process scores all images against its own shard of the pose bank "
                        "(for banks too large for one process) instead of sharing the images (docs/mpi.md)")
    g = p.add_argument_group("inference")
    g.add_argument("--mode", default=DEFAULT_MODES,
                   help=f"comma-separated modes among {', '.join(MODES)}, or all (default: %(default)s; "
                        "hml is dropped from the default when the run has no pretrain_model.npz)")
    g.add_argument("--A", default="auto",
                   help="poses averaged by StructNet-Avg(A) (and the APF/IK targets); auto = 0.5%% of the bank, "
                        "the paper's 500 of ~100k training poses (default: %(default)s)")
    g.add_argument("--sweep-A", type=sweep_arg, default=(), metavar="auto|A1,A2,...",
                   help="also evaluate StructNet-Avg(A) for these A and draw Figure 3 (error versus A as a share of "
                        "the bank); auto = A at " + ", ".join(f"{100 * s:g}%%" for s in SWEEP_SHARES) + " of the bank")
    g.add_argument("--export-topk", nargs=2, metavar=("K", "FILE"), default=None,
                   help="write the K best-scoring bank poses and their scores per test image to FILE (.npz)")
    g.add_argument("--best-of", type=best_of_arg, default=D.best_of, metavar="K1,K2,...",
                   help="best-of-k MPJPE over the k highest-scoring bank poses (the multi-hypothesis oracle) for these "
                        "k; '' = none (default: " + ",".join(map(str, D.best_of)) + ")")
    g.add_argument("--retrieval", action="store_true",
                   help="Hit@1,10,20 of image-to-pose retrieval over the bank and of cross-view retrieval of the test "
                        "images (an all-pairs pass over the test images)")
    g.add_argument("--retrieval-mm", type=flags.positive_float, default=D.retrieval_mm,
                   help="a retrieval hit: P-MPJPE within this many mm of the query's pose (default: %(default)s)")
    g.add_argument("--train-images", type=flags.non_negative_int, default=D.train_images,
                   help="training images (evenly spaced) for the alignment statistic and Figure 4; 0 = skip "
                        "(default: %(default)s)")
    g = p.add_argument_group("APF (StructNet-Avg(A)-APF; docs/apf.md)")
    g.add_argument("--apf-particles", type=flags.positive_int, default=apf.n_particles, help="(default: %(default)s)")
    g.add_argument("--apf-layers", type=flags.positive_int, default=apf.n_layers, help="annealing layers per stage "
                   "(default: %(default)s)")
    g.add_argument("--apf-stages", default=",".join(apf.stages),
                   help="comma-separated stages among torso, girdle, limbs, all (default: %(default)s)")
    g.add_argument("--apf-seed", type=flags.non_negative_int, default=apf.seed, help="(default: %(default)s)")
    g.add_argument("--apf-starts", type=flags.positive_int, default=apf.starts,
                   help="filter runs per image, each from one of the top-A poses (the top-1 pose, then those "
                        "nearest the Avg(A) target), keeping the best; time grows with it, 1 is the paper's "
                        "single start (default: %(default)s)")
    g = p.add_argument_group("output")
    g.add_argument("--json", default="", metavar="FILE", help="write the results as JSON (docs/eval.md)")
    g.add_argument("--figures", default="", metavar="DIR",
                   help="write Figure 4 (embedding) and predicted-vs-true skeletons (and Figure 3 with --sweep-A)")
    g.add_argument("--export-vp3d", default="", metavar="FILE",
                   help="write the predictions (the first evaluated of " + ", ".join(PREFERRED) + ") as a "
                        "VideoPose3D-style .npz: positions_3d {subject: {action: [array per camera]}}, metres, "
                        "camera coordinates, root-relative")
    g.add_argument("--export-vp3d-world", default="", metavar="FILE",
                   help="the same predictions in world coordinates (as VideoPose3D's data_3d_h36m.npz: z up, metres), "
                        "each placed at the true root and moved by its camera's extrinsics; the same per-camera layout "
                        "(docs/eval.md)")
    g.add_argument("--export-bvh", default="", metavar="DIR",
                   help="write the StructNet-Avg(A)-APF poses as BVH, one file per (subject, action, sub-action, "
                        "camera) sequence in frame order, and DIR/sequences.json (needs the apf mode; docs/apf.md)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("--conv-algorithm", default="fixed", choices=conv_tune.MODES,
                   help="convolution algorithm, as run_train.py's: auto = measured per layer shape (nn.conv_tune), "
                        "fixed = fft for stride 1 on the CPU, else im2col; changes rounding only "
                        "(default: %(default)s)")
    return p


def parse_config(argv=None):
    """The EvalConfig of a command line; a bad value exits with argparse's usage error (status 2)."""
    parser = build_parser()
    if comm.launch_rank():      # under mpiexec: usage and flag errors once, from rank 0
        parser._print_message = lambda *a, **k: None
    args = parser.parse_args(argv)
    conv_tune.set_policy(args.conv_algorithm)   # process-wide, for every network this evaluation runs
    try:
        modes = parse_modes(args.mode)
    except ValueError as err:
        parser.error(f"--mode: {err}")
    try:
        subjects = h36m.parse_subjects(args.subjects)
    except ValueError as err:
        parser.error(f"--subjects: {err}")
    actions = ()
    if args.actions.strip():
        try:
            actions = tuple(h36m.canonical_action(a.strip()) for a in args.actions.split(",") if a.strip())
        except ValueError as err:
            parser.error(f"--actions: {err}")
    A = None
    if args.A != "auto":
        try:
            A = flags.positive_int(args.A)
        except argparse.ArgumentTypeError:
            parser.error(f"--A: expected a positive integer or auto, got {args.A!r}")
    export_k, export_path = 0, ""
    if args.export_topk:
        try:
            export_k, export_path = flags.positive_int(args.export_topk[0]), args.export_topk[1]
        except argparse.ArgumentTypeError:
            parser.error(f"--export-topk: K must be a positive integer, got {args.export_topk[0]!r}")
        if not export_path.strip():
            parser.error("--export-topk: FILE must not be empty")
    if args.export_bvh and "apf" not in modes:
        parser.error("--export-bvh writes the StructNet-Avg(A)-APF poses: add apf to --mode")
    try:
        apf = APFConfig(n_particles=args.apf_particles, n_layers=args.apf_layers,
                        stages=tuple(s.strip() for s in args.apf_stages.split(",") if s.strip()), seed=args.apf_seed,
                        starts=args.apf_starts)
    except ValueError as err:
        parser.error(f"APF settings: {err}")
    return EvalConfig(run=args.run, data=args.data, subjects=subjects, actions=actions, max_images=args.max_images,
                      device=args.device, batch_size=args.batch_size, bank_chunk=args.bank_chunk,
                      cache=not args.no_cache, shard_bank=args.shard_bank, modes=modes,
                      modes_explicit=args.mode != DEFAULT_MODES, A=A,
                      sweep=args.sweep_A, export_k=export_k, export_path=export_path,
                      train_images=args.train_images, best_of=args.best_of, retrieval=args.retrieval,
                      retrieval_mm=args.retrieval_mm, vp3d_path=args.export_vp3d,
                      vp3d_world_path=args.export_vp3d_world, apf=apf, json_path=args.json,
                      figures_dir=args.figures, bvh_dir=args.export_bvh, progress=not args.no_progress)


def main(argv=None):
    keep_freed_memory()
    cfg = parse_config(argv)
    return exit_status("run_eval.py", lambda: run_evaluation(cfg, comm=comm.world()))   # docs/mpi.md


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Train StructNet: multi-task pre-training of the convolutions, then Algorithm 1.

    python run_train.py --subjects S1,S5,S6,S7,S8          # embedded synthetic data, CPU preset
    python run_train.py --data h36m.h5 --preset paper --device gpu
    python run_train.py --resume --out runs/20261121-101500

Without --data the embedded synthetic Human3.6M-like dataset is generated on first use (cached
under cache/). Each run writes to a fresh runs/<time stamp> directory (runs/latest points at it)
unless --out is given; run_eval.py reads runs/latest by default.
"""
import argparse
import sys

from structlearn.config import RECIPES, TrainConfig

D = TrainConfig()


def csv(text):
    return tuple(s.strip() for s in text.split(",") if s.strip())


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data and run")
    g.add_argument("--data", default=D.data, help="HDF5 dataset (default: the embedded synthetic dataset)")
    g.add_argument("--synth-scale", type=float, default=D.synth_scale, help="size of the synthetic dataset if generated")
    g.add_argument("--synth-rooms", default=D.synth_rooms, choices=("lab", "random"), help="rooms of the synthetic "
                   "dataset if generated: one fixed capture lab as in Human3.6M, or a random room per sequence "
                   "(the harder variant) (default: %(default)s)")
    g.add_argument("--subjects", type=csv, default=D.subjects, help="training subjects, comma-separated (default: %(default)s)")
    g.add_argument("--actions", type=csv, default=D.actions, help="training actions, comma-separated (default: all)")
    g.add_argument("--out", default="", help="run directory (default: a new runs/<time stamp>; with --resume: runs/latest)")
    g.add_argument("--recipe", choices=sorted(RECIPES), help="a named bundle of defaults; explicit flags still win. "
                   "paper: Sec. 5.3 to the letter (" + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                   RECIPES["paper"].items()) + "); the default departs from it where measured (README). long: the long "
                   "recipe (" + ", ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in RECIPES["long"].items()) + "; "
                   "README)")
    g.add_argument("--preset", default=D.preset, choices=("cpu", "paper", "tiny"), help="network preset: cpu (56x56 inputs, 256-unit layers) or paper "
                   "(112x112, conv 9x9x32/5x5x32/5x5x64, 1024 units) (default: %(default)s)")
    g.add_argument("--seed", type=int, default=D.seed, help="random seed (default: %(default)s)")
    g.add_argument("--device", default=D.device, choices=("cpu", "gpu"), help="(default: %(default)s)")
    g.add_argument("--stage", default=D.stage, choices=("pretrain", "structnet", "all"), help="(default: %(default)s)")
    g.add_argument("--pretrained", default=D.pretrained, help="pre-trained network for --stage structnet "
                   "(default: <out>/pretrain_model.npz; 'none' = random convolutions)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out (or runs/latest) exactly")
    g.add_argument("--checkpoint-every", type=int, default=D.checkpoint_every, help="mini-batches between checkpoints")
    g.add_argument("--stop-after", type=int, default=D.stop_after, help="stop after N mini-batches, with a checkpoint (testing)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars (the JSONL log is always written)")
    g.add_argument("--eval-every", type=int, default=D.eval_every, metavar="N",
                   help="learning curves: every N max-margin epochs (and at the start and end) evaluate the training "
                        "alignment and test MPJPE on fixed subsets into <out>/curves.jsonl, drawn into "
                        "<out>/learning_curves.png; changes nothing of the training (default: 0 = off)")
    g = p.add_argument_group("network")
    g.add_argument("--pose-embedding", default=D.pose_embedding, choices=("raw", "random1", "1layer", "2layer"),
                   help="Table 3's variants (default: %(default)s)")
    g.add_argument("--dropout", type=float, default=D.dropout, help="dropout rate on the inputs of h1, h2; the paper's is "
                   "0.75 (--recipe paper) (default: %(default)s)")
    g.add_argument("--width", type=int, default=D.width, help="units of the fully connected layers h1-h6 "
                   "(default: the preset's)")
    g.add_argument("--input-size", type=int, default=D.input_size, help="crops fed to conv1, in pixels: 112 "
                   "(the paper's) or 56 (the cpu preset's) of the 128-pixel images, box-downsampled to keep a "
                   "1/8 crop margin (default: the preset's)")
    g = p.add_argument_group("pre-training (reference [18])")
    g.add_argument("--pretrain-epochs", type=int, default=D.pretrain_epochs, help="(default: %(default)s)")
    g.add_argument("--pretrain-batch-size", type=int, default=D.pretrain_batch_size, help="(default: %(default)s)")
    g.add_argument("--pretrain-lr", type=float, default=D.pretrain_lr, help="SGD learning rate, x0.1 for the last quarter (default: %(default)s)")
    g.add_argument("--pretrain-momentum", type=float, default=D.pretrain_momentum, help="(default: %(default)s)")
    g.add_argument("--pretrain-dropout", type=float, default=D.pretrain_dropout, help="dropout rate of the pre-training network (default: %(default)s)")
    g.add_argument("--detect-weight", type=float, default=D.detect_weight, help="weight of the joint-detection task (default: %(default)s)")
    g = p.add_argument_group("max-margin training (Algorithm 1)")
    g.add_argument("--epochs", type=int, default=D.epochs, help="(default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=D.batch_size, help="(default: %(default)s)")
    g.add_argument("-C", "--candidates", type=int, default=D.candidates, help="uniformly sampled candidate poses C (default: %(default)s)")
    g.add_argument("-K", "--frequent", type=int, default=D.frequent, help="most frequently violated poses K (default: %(default)s)")
    g.add_argument("--lam", type=float, default=D.lam, help="lambda, auxiliary pose prediction weight (default: %(default)s)")
    g.add_argument("--alpha", type=float, default=D.alpha, help="alpha, weight decay (default: %(default)s)")
    g.add_argument("--margin-scale", type=float, default=D.margin_scale, help="margin = scale x MPJPE in mm (default: %(default)s)")
    g.add_argument("--ls-min", type=float, default=D.ls_min, help="smallest line-search step (default: %(default)s)")
    g.add_argument("--ls-max", type=float, default=D.ls_max, help="largest line-search step (default: %(default)s)")
    g.add_argument("--ls-points", type=int, default=D.ls_points, help="log-spaced grid points (default: %(default)s)")
    g.add_argument("--ls-fixed", dest="ls_reselect", action="store_false", help="line search on the fixed extended "
                   "data D (y_hat kept); the default re-selects y_hat among the batch's candidates at every trial "
                   "step, since eq. 12's cost depends on theta through y_hat (the fixed variant diverged in our runs)")
    g.add_argument("--optimizer", default=D.optimizer, choices=("linesearch", "adam"), help="adam: Adam on eq. 12's "
                   "cost; linesearch: the paper's grid line search and SGD step, which fits 5x worse on the synthetic "
                   "benchmark (README) (default: %(default)s)")
    g.add_argument("--adam-lr", type=float, default=D.adam_lr, help="Adam's rate with --optimizer adam (default: %(default)s)")
    g.add_argument("--adam-decay", type=float, default=D.adam_decay, help="Adam's rate x this for the last quarter "
                   "of the epochs, as pre-training's schedule (default: %(default)s, constant)")
    g.add_argument("--noise-std", type=float, default=D.noise_std, help="PCA colour-noise std (default: %(default)s)")
    g.add_argument("--train-convs", action="store_true", help="also train the convolutions (the paper fixes them)")
    g = p.add_argument_group("execution")
    g.add_argument("--conv-algorithm", default=D.conv_algorithm, choices=("auto", "fixed", "fft", "im2col"),
                   help="convolution algorithm: auto = the faster per layer shape and pass, measured once per "
                        "machine (nn.conv_tune; python -m nn.conv_tune --show); fixed = fft for stride 1 on the "
                        "CPU, else im2col (the rule before auto); the choice changes rounding only and is recorded "
                        "in the run's conv_algorithms.json; --resume repeats it (default: %(default)s)")
    return p


def parse_args(parser, argv=None):
    """Arguments with --recipe's defaults under the explicit flags."""
    args = parser.parse_args(argv)
    if args.recipe:
        parser.set_defaults(**RECIPES[args.recipe])
        args = parser.parse_args(argv)
    return args


def config_from_args(args, parser):
    from structlearn.train import default_run_dir
    if args.resume:
        out = args.out or "runs/latest"
    else:
        out = args.out or str(default_run_dir())
    values = {k: v for k, v in vars(args).items() if k not in ("no_progress", "out", "recipe")}
    cfg = TrainConfig(**values, out=out, progress=not args.no_progress)
    if cfg.stage == "structnet" and not args.resume and not cfg.pretrained:
        parser.error("--stage structnet needs --pretrained FILE (a pretrain_model.npz) or --pretrained none")
    return cfg


def main(argv=None):
    from nn import comm
    from nn.backend import keep_freed_memory
    keep_freed_memory()
    parser = build_parser()
    if comm.launch_rank():      # under mpiexec: usage and flag errors once, from rank 0
        parser._print_message = lambda *a, **k: None
    args = parse_args(parser, argv)
    cfg = config_from_args(args, parser)
    from structlearn.train import Trainer, TrainingError, point_latest
    from structlearn.trained_run import exit_status

    def train():
        group = comm.world()    # several processes under mpiexec/srun (docs/mpi.md), else one
        cfg.out = group.bcast(cfg.out)     # rank 0's time-stamped directory for all
        trainer = Trainer(cfg, comm=group)
        say = print if group.root else (lambda *a: None)
        if not args.out and not args.resume and group.root:
            point_latest(cfg.out)
        say(f"run directory: {trainer.out}  (data: {trainer.data_path}, {len(trainer.idx)} training images"
            + (f", {group.size} MPI processes)" if group.size > 1 else ")"))
        done = trainer.run()
        say(f"done: {done}")
    return exit_status("run_train.py", train, (TrainingError,),
                       "interrupted; continue with --resume (the last checkpoint is intact)")


if __name__ == "__main__":
    sys.exit(main())

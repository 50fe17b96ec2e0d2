"""python -m data.synth: generate (or reuse) the synthetic dataset, or preview it.

    python -m data.synth --out FILE.h5 [--scale S] [--seed N] [--rooms lab|random] [--bank-rate HZ]
                         [--clip-frames N] [--workers W] [--force]
    python -m data.synth --preview FILE.png [--data FILE.h5] [--rooms lab|random]
"""
import argparse
import logging
import os
import sys
import time

import data.synth
from data import flags
from data.dataset import DatasetError
from data.synth.generator import (BANK_RATE_HZ, CLIP_FRAMES, FRAMES_PER_SEQUENCE, ROOMS, check_settings,
                                  default_path, ensure_synthetic)
from data.synth.preview import preview


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m data.synth", description=data.synth.__doc__.split("\n")[0])
    g = parser.add_argument_group("generation")
    g.add_argument("--out", help="dataset file to write (default: the cache path for --scale/--seed)")
    g.add_argument("--scale", type=flags.positive_float, default=1.0,
                   help=f"size multiplier: {FRAMES_PER_SEQUENCE} frames per sequence and camera at 1 (default 1)")
    g.add_argument("--seed", type=flags.non_negative_int, default=0, help="random seed (default 0)")
    g.add_argument("--rooms", choices=ROOMS, default="lab",
                   help="lab: one capture room for the whole dataset, as Human3.6M (default); random: a "
                        "room of its own for every sequence (harder)")
    g.add_argument("--bank-rate", type=flags.positive_float, default=BANK_RATE_HZ, metavar="HZ",
                   help=f"poses per second kept in the file's pose bank; must divide 50 (default {BANK_RATE_HZ:g})")
    g.add_argument("--clip-frames", type=flags.positive_int, default=CLIP_FRAMES, metavar="N",
                   help="image frames come in clips of N consecutive pose-bank frames, so training images "
                        f"have temporal neighbours (default {CLIP_FRAMES}: single frames spread over the sequence)")
    g.add_argument("--workers", type=flags.positive_int, default=None, help="processes (default: all cores)")
    g.add_argument("--force", action="store_true", help="regenerate even if a matching file exists")
    p = parser.add_argument_group("preview")
    p.add_argument("--preview", metavar="PNG", help="write a grid of samples with their skeletons")
    p.add_argument("--data", metavar="H5", help="sample the preview from this dataset file")
    return parser


def parse_args(argv=None):
    """The checked arguments; a bad one exits with argparse's usage error (status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_settings(args.scale, args.rooms, args.bank_rate, args.clip_frames)
    except ValueError as e:
        parser.error(str(e))
    if args.data and not args.preview:
        parser.error("--data only goes with --preview")
    if args.preview and args.out:
        parser.error("--preview and --out are separate commands")
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    target = args.preview or args.out or default_path(args.scale, args.seed, args.rooms, args.bank_rate,
                                                      args.clip_frames)
    try:
        if args.preview:
            preview(args.preview, data=args.data, seed=args.seed, rooms=args.rooms)
            print(f"wrote {args.preview}")
            return 0
        if args.force and os.path.exists(target):
            os.remove(target)
        start = time.time()
        path = ensure_synthetic(target, scale=args.scale, seed=args.seed, rooms=args.rooms, workers=args.workers,
                                bank_rate_hz=args.bank_rate, clip_frames=args.clip_frames)
        print(f"{path}: {os.path.getsize(path) / 2**20:.0f} MiB ({time.time() - start:.0f} s)")
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {target}: cannot write ({e.strerror or e})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

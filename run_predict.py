#!/usr/bin/env python
"""Predict 3D poses on one's own images with a trained StructNet.

    python run_predict.py photo.jpg                        # the whole image as the person box
    python run_predict.py photos/ --boxes boxes.json --out predictions/
    python run_predict.py a.png b.png --boxes boxes.csv --A 200 --top-k 10 --no-apf
    python run_predict.py video_frames/ --export-bvh bvh/ --bvh-fps 25   # the APF poses as one BVH file

Boxes: JSON {"file name": [x, y, w, h]} or CSV rows name,x,y,w,h (pixels; a name is the image's
path as given or its file name); images without one use the whole image. The crop is the square of
side max(w, h) centred on the box, as the dataset's crops. Writes <out>/predictions.json (every
image: StructNet-Max, Avg(A), Avg(A)-APF, Pred, the top-k bank poses) and <out>/<image>.png.
docs/eval.md describes the JSON.
"""
import argparse
import sys

from data import flags
from structlearn.predict import PredictConfig, predict
from structlearn.trained_run import exit_status

D = PredictConfig(inputs=())


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and folders of images")
    p.add_argument("--boxes", default=D.boxes, metavar="FILE", help="person boxes, .json or .csv (default: whole image)")
    p.add_argument("--run", default=D.run, help="run directory or model.npz (default: %(default)s)")
    p.add_argument("--data", default=D.data, help="HDF5 dataset of the pose bank (default: the model's training data)")
    p.add_argument("--out", default=D.out, metavar="DIR", help="output folder (default: %(default)s)")
    p.add_argument("--A", type=flags.positive_int, default=None,
                   help="poses averaged by StructNet-Avg(A) (default: 0.5%% of the bank, as run_eval.py)")
    p.add_argument("--top-k", type=flags.positive_int, default=D.top_k, help="hypotheses kept per image "
                   "(default: %(default)s)")
    p.add_argument("--no-apf", action="store_true", help="skip StructNet-Avg(A)-APF")
    p.add_argument("--device", default=D.device, choices=("cpu", "gpu"), help="(default: %(default)s)")
    p.add_argument("--export-bvh", default=D.bvh_dir, metavar="DIR",
                   help="write the StructNet-Avg(A)-APF poses as BVH: one file per folder of frames (its images in "
                        "name order), one for the image files given on their own (docs/apf.md)")
    p.add_argument("--bvh-fps", type=flags.positive_float, default=D.bvh_fps,
                   help="frame rate of the BVH files (default: %(default)s, Human3.6M's)")
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.export_bvh and args.no_apf:
        parser.error("--export-bvh writes the StructNet-Avg(A)-APF poses: it cannot go with --no-apf")
    cfg = PredictConfig(inputs=tuple(args.inputs), boxes=args.boxes, run=args.run, data=args.data, out=args.out,
                        A=args.A, top_k=args.top_k, apf=not args.no_apf, device=args.device,
                        bvh_dir=args.export_bvh, bvh_fps=args.bvh_fps)
    return exit_status("run_predict.py", lambda: predict(cfg))


if __name__ == "__main__":
    sys.exit(main())

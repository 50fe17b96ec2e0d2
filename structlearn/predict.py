"""Prediction on one's own images (run_predict.py): a person box per image, the crop made as the
dataset makes its crops (data.prepare_h36m), the evaluation's preprocessing (data.loader.eval_images),
model and pose bank (structlearn.evaluate.Evaluator), and per image StructNet-Max, Avg(A),
Avg(A)-APF and Pred poses, the top-k bank hypotheses and a picture; all of them in one JSON file.

Poses: 17 joints (data.h36m.JOINT_NAMES), mm, root-relative, camera axes (x right, y down, z away).
"""
import csv
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from apf import APFConfig, refine_poses
from data import h36m
from data.dataset import IMAGE_SIZE
from data.files import write_text_atomic
from data.loader import eval_images
from data.prepare_h36m import IMAGE_EXTENSIONS, crop_resize, integer_box
from data.skeleton import Skeleton
from nn import backend

from . import bvh_export
from .evaluate import APF_SLICE, PREFERRED, Evaluator, default_A, method_name
from .inference import average_prefixes, image_outputs, to_host, top_k_scores
from .trained_run import EvalError

JSON_NAME = "predictions.json"
BATCH = 64


@dataclass
class PredictConfig:
    inputs: tuple                  # image files and folders
    boxes: str = ""                # JSON or CSV boxes file; "" = the whole image per image
    run: str = "runs/latest"
    data: str = ""                 # "" = the model's training data (its pose bank)
    out: str = "predictions"
    A: int = None                  # None = structlearn.evaluate.default_A of the bank
    top_k: int = 5
    apf: bool = True
    device: str = "cpu"
    bvh_dir: str = ""              # BVH files of the APF poses, one per sequence (image_sequences); "" = none
    bvh_fps: float = h36m.FPS      # their frame rate


def list_images(inputs):
    """Image paths of files and folders (a folder: its files with data.prepare_h36m.IMAGE_EXTENSIONS, sorted)."""
    out = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise EvalError(f"{item}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the folder")
            out += found
        elif p.is_file():
            out.append(str(p))
        else:
            raise EvalError(f"{item}: no such image file or folder")
    if not out:
        raise EvalError("no images given")
    return out


def image_sequences(inputs):
    """The sequences of the BVH export, [(name, positions in list_images(inputs))]: each folder is
    one (its images sorted by name, named after it), the image files given on their own are one
    together in the order given (named "images"); names made unique with _2, _3..."""
    out, loose, start = [], [], 0
    for item in inputs:
        n = len(list_images([item]))
        if Path(item).is_dir():
            out.append((Path(os.path.abspath(item)).name or "frames", list(range(start, start + n))))
        else:
            loose.append(start)
        start += n
    if loose:
        out.append(("images", loose))
    seen, named = {}, []
    for name, pos in out:
        seen[name] = seen.get(name, 0) + 1
        named.append((name if seen[name] == 1 else f"{name}_{seen[name]}", pos))
    return named


def read_image(path):
    """RGB uint8 (H, W, 3) of an image file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise EvalError(f"{path}: cannot read the image ({err.__class__.__name__}: {err})") from None


def _parse_box(values, where):
    try:
        box = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        box = ()
    if len(box) != 4 or not all(np.isfinite(box)):
        raise EvalError(f"{where}: expected a box of four numbers x, y, w, h, got {values!r}")
    return box


def read_boxes(path, images):
    """{image path: (x, y, w, h)} of a boxes file: JSON {"name": [x, y, w, h]} or CSV name,x,y,w,h
    (a header row allowed). A name is an image's path as given or its file name."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise EvalError(f"{path}: cannot read the boxes file ({err})") from None
    if path.lower().endswith(".json"):
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as err:
            raise EvalError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(entries, dict):
            raise EvalError(f"{path}: expected a JSON object {{\"file name\": [x, y, w, h]}}")
        entries = [(name, _parse_box(v, f"{path}: {name!r}")) for name, v in entries.items()]
    else:
        rows = [r for r in csv.reader(text.splitlines()) if any(c.strip() for c in r)]
        if rows and [c.strip().lower() for c in rows[0]] == ["name", "x", "y", "w", "h"]:
            rows = rows[1:]
        entries = []
        for line, r in enumerate(rows, 1):
            if len(r) != 5:
                raise EvalError(f"{path}: row {line}: expected name,x,y,w,h, got {','.join(r)!r}")
            entries.append((r[0].strip(), _parse_box(r[1:], f"{path}: row {line}")))
    by_name = {}
    for im in images:
        for key in {im, os.path.basename(im)}:
            by_name.setdefault(key, []).append(im)
    out = {}
    for name, box in entries:
        hits = by_name.get(name, [])
        if not hits:
            raise EvalError(f"{path}: {name!r} is not among the images given")
        if len(hits) > 1:
            raise EvalError(f"{path}: {name!r} names several images given ({', '.join(hits[:3])}); use their paths")
        out[hits[0]] = box
    return out


def person_crop(frame, box, name):
    """The IMAGE_SIZE crop (S, S, 3) uint8 of a person box (x, y, w, h) in frame (H, W, 3), made as the
    dataset's: the square of side max(w, h) centred on the box (data.h36m.square_box of its corners),
    whole pixels (integer_box), black outside the image, resized (crop_resize). Returns (crop, (x0, y0, side))."""
    x, y, w, h = box
    H, W = frame.shape[:2]
    if w <= 0 or h <= 0:
        raise EvalError(f"{name}: box {list(box)} has a non-positive size")
    if x < 0 or y < 0 or x + w > W or y + h > H:
        raise EvalError(f"{name}: box {list(box)} (x, y, w, h) is not inside the {W}x{H} image")
    square = h36m.square_box(np.array([[x, y], [x + w, y + h]]), margin=0.0, min_size=0.0)
    ibox = integer_box(square)
    return crop_resize(frame, ibox, IMAGE_SIZE), ibox


def mean_skeleton(ev):
    """The APF's skeleton without a test subject: the mean bone lengths of the training subjects'
    T-pose skeletons (Evaluator.skeletons, the evaluation's per-subject template)."""
    skel = ev.skeletons(list(ev.train_subjects))
    return Skeleton(np.mean([s.bone_lengths for s in skel.values()], axis=0))


def _apf(skeleton, targets, inits, config):
    out = np.empty_like(targets)
    for j in range(0, len(targets), APF_SLICE):   # slices as the evaluation's, seeded by their number
        seed = int(np.random.SeedSequence([int(config.seed), j // APF_SLICE]).generate_state(1)[0])
        sl = slice(j, j + APF_SLICE)
        out[sl] = refine_poses(skeleton, targets[sl], inits[sl], APFConfig(**{**asdict(config), "seed": seed}))
    return out


def _unique_stems(paths):
    seen, out = {}, []
    for p in paths:
        stem = Path(p).stem
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return out


def predict(cfg, log=print):
    """Predict cfg.inputs with cfg.run; writes <out>/predictions.json and <out>/<image>.png.
    Returns the JSON object. EvalError for anything the user can fix."""
    from .figures import prediction_figure

    paths = list_images(cfg.inputs)
    boxes = read_boxes(cfg.boxes, paths) if cfg.boxes else {}
    if cfg.bvh_dir:
        if not cfg.apf:
            raise EvalError("the BVH export needs the StructNet-Avg(A)-APF poses (drop --no-apf)")
        bvh_export.prepare_directory(cfg.bvh_dir)
    crops, records = [], []
    for p in paths:   # every image is checked before the model loads
        frame = read_image(p)
        box = boxes.get(p, (0.0, 0.0, float(frame.shape[1]), float(frame.shape[0])))
        crop, ibox = person_crop(frame, box, p)
        crops.append(crop)
        records.append({"file": p, "box": [float(v) for v in box], "box_source": "file" if p in boxes else "whole image",
                        "crop_box": list(ibox)})
    crops = np.stack(crops)
    ev = Evaluator(cfg.run, cfg.data or None, cfg.device, log=log)
    M = ev.bank_size
    A = default_A(M) if cfg.A is None else min(int(cfg.A), M)
    k = min(int(cfg.top_k), M)
    model = ev.model
    top_s, top_i, f_P = [], [], []
    for s in range(0, len(crops), BATCH):
        x = backend.to_device(eval_images(crops[s:s + BATCH], model.stats, model.net.cfg.input_size,
                                          model.net.cfg.downsample), ev.device)
        f_I, fp = image_outputs(model.net, model.params, x)
        sc, ix = top_k_scores(f_I, ev.bank.emb, max(A, k))
        top_s.append(to_host(sc))
        top_i.append(to_host(ix))
        f_P.append(to_host(fp))
    top_s, top_i = np.concatenate(top_s), np.concatenate(top_i)
    preds = {"max": ev.bank.poses[top_i[:, 0]], "avg": average_prefixes(top_i, ev.bank.poses, [A])[A]}
    skeleton_note = None
    if cfg.apf:
        preds["apf"] = _apf(mean_skeleton(ev), preds["avg"], preds["max"], APFConfig())
        skeleton_note = "mean bone lengths of the training subjects' T poses (" + ", ".join(ev.train_subjects) + ")"
    preds["pred"] = model.normalizer.denormalize(np.concatenate(f_P))
    poses = {method_name(m, A): p for m, p in preds.items()}
    # the picture draws the evaluation's preferred prediction first, in the limb colours
    shown = [method_name(m, A) for m in PREFERRED if m in preds]
    os.makedirs(cfg.out, exist_ok=True)
    for i, (rec, stem) in enumerate(zip(records, _unique_stems(paths))):
        rec["picture"] = prediction_figure(os.path.join(cfg.out, stem + ".png"), crops[i],
                                           {m: poses[m][i] for m in shown}, os.path.basename(rec["file"]))
        rec["poses"] = {m: p[i].astype(np.float64).tolist() for m, p in poses.items()}
        rec["top_k"] = {"bank_index": top_i[i, :k].tolist(), "scores": top_s[i, :k].astype(np.float64).tolist(),
                        "poses": ev.bank.poses[top_i[i, :k]].astype(np.float64).tolist()}
    result = {"run": ev.model_path, "data": ev.data_path, "bank_size": M, "A": A, "top_k": k,
              "units": "mm, root-relative, camera axes (x right, y down, z away from the camera)",
              "joints": list(h36m.JOINT_NAMES), "apf_skeleton": skeleton_note, "images": records}
    json_path = os.path.join(cfg.out, JSON_NAME)
    write_text_atomic(json_path, json.dumps(result, indent=1) + "\n")
    log(f"{len(records)} image(s): {json_path} and a picture per image in {cfg.out}")
    if cfg.bvh_dir:
        bvh_export.export_predictions(cfg.bvh_dir, image_sequences(cfg.inputs), paths, preds["apf"],
                                      mean_skeleton(ev), cfg.bvh_fps, A, skeleton_note, log)
    return result

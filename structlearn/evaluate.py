"""Evaluation of a trained StructNet on the paper's protocol (Sec. 5.2, Table 1, Figures 3-4).

Modes (predictions per test image; poses root-relative, mm, 17 joints):
    max   StructNet-Max            the bank pose of maximum score <f_I(x), f_J(y)> (eq. 4)
    avg   StructNet-Avg(A)         the mean of the A highest-scoring bank poses
    apf   StructNet-Avg(A)-APF     apf.refine_poses: the test subject's skeleton (from its T pose),
                                   target the Avg(A) pose, started from the top-1 pose
    pred  StructNet-Pred           the auxiliary output f_P (eq. 10), denormalised
    hml   DconvMP-HML              the regression head of the pre-training network ([18])
    ik    StructNet-Avg(A)-IK      (not in the paper) skeleton.forward(skeleton.inverse(Avg(A))) with
                                   the test subject's skeleton: keeps the bone directions of the
                                   average, restores its bone lengths
The pose bank (the paper's approximation of the pose space) is every training pose of the model's
training subjects (and actions), read from the data file; its embeddings are computed once per
model and cached beside the model file (<model>.bank.npz), keyed by a fingerprint of the pose
branch's parameters, the normaliser and the bank poses, so a stale cache is never used.

Metrics (data.metrics): MPJPE (eq. 8) and P-MPJPE (after a similarity Procrustes alignment) per
frame; per action: mean, standard deviation over frames (ddof 0) and frame count; overall: the
mean over all frames ("all frames") and the unweighted mean of the per-action means ("action
mean"). Both are reported because papers differ.
"""
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from apf import APFConfig, refine_poses
from data import h36m
from data.dataset import BatchLoader, DatasetError, ImageStats, PoseDataset, root_relative
from data.metrics import mpjpe, p_mpjpe
from data.skeleton import Skeleton
from nn import backend

from .checkpoint import CheckpointError
from .encoding import PoseNormalizer
from .inference import (average_prefixes, image_outputs, pose_embeddings, regression_outputs, to_host,
                        top_k_scores)
from .model import load_model
from .network import POSE_DIM

MODES = ("max", "avg", "apf", "ik", "pred", "hml")
PAPER_MODES = ("max", "avg", "apf", "pred", "hml")
USES_A = ("avg", "apf", "ik")
A_FRACTION = 0.005          # the paper's A = 500 is ~0.5% of its ~100k training poses (Sec. 5.4)
ALIGN_THRESHOLD_MM = 30.0   # Sec. 6: share of max-score training poses within 30 mm
BANK_FORMAT = 1
APF_SLICE = 256             # images per APF call (its per-image seeds depend on the slice only)


class EvalError(ValueError):
    """A problem the user can act on: run_eval prints it as one line and exits non-zero."""


# ============================================================================ names
def method_name(mode, A=None):
    """The row label of Table 1 for a mode: 'StructNet-Avg(500)-APF', ...; '*' marks our additions."""
    return {"max": "StructNet-Max", "avg": f"StructNet-Avg({A})", "apf": f"StructNet-Avg({A})-APF",
            "ik": f"StructNet-Avg({A})-IK*", "pred": "StructNet-Pred", "hml": "DconvMP-HML"}[mode]


def parse_modes(text):
    """'max,avg,apf' -> ('max', 'avg', 'apf') in MODES order; ValueError naming an unknown mode."""
    items = [m.strip().lower() for m in str(text).split(",") if m.strip()]
    if items == ["all"]:
        return MODES
    unknown = [m for m in items if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode {unknown[0]!r}; choose from {', '.join(MODES)} (or all)")
    if not items:
        raise ValueError(f"no mode given; choose from {', '.join(MODES)}")
    return tuple(m for m in MODES if m in items)


def default_A(bank_size):
    """A for StructNet-Avg(A) when none is given: 0.5% of the bank (the paper's 500 of ~100k), >= 1."""
    return int(max(1, min(bank_size, round(A_FRACTION * bank_size))))


# ============================================================================ aggregation
def per_action(values, actions):
    """{action: {"mean", "std", "n"}} of per-frame values (N,) grouped by actions (N,).

    Actions in data.h36m.ACTIONS order (others after, sorted); std over frames with ddof 0.
    """
    values, actions = np.asarray(values, dtype=np.float64), np.asarray(actions)
    if values.shape != actions.shape or values.ndim != 1:
        raise ValueError(f"per_action: values {values.shape} and actions {actions.shape} must be equal 1-D shapes")
    present = set(actions.tolist())
    order = [a for a in h36m.ACTIONS if a in present] + sorted(present - set(h36m.ACTIONS))
    out = {}
    for a in order:
        v = values[actions == a]
        out[a] = {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}
    return out


def summarize(values, actions):
    """Per-action table plus the two overall figures: the mean over all frames and the mean over
    actions (each action weighted equally). -> {"per_action", "all_frames", "all_frames_std",
    "action_mean", "n"}."""
    table = per_action(values, actions)
    values = np.asarray(values, dtype=np.float64)
    return {"per_action": table, "all_frames": float(values.mean()), "all_frames_std": float(values.std()),
            "action_mean": float(np.mean([r["mean"] for r in table.values()])), "n": int(values.size)}


def evenly_spaced(idx, n):
    """At most n entries of idx, evenly spaced (first and last included); all of idx if n <= 0."""
    idx = np.asarray(idx)
    if n <= 0 or n >= len(idx):
        return idx
    return idx[np.unique(np.round(np.linspace(0, len(idx) - 1, n)).astype(np.int64))]


# ============================================================================ model and data
def resolve_run(run):
    """(model.npz, pretrain_model.npz or None) of a run directory or a model file."""
    path = Path(run)
    if path.is_file():
        model, run_dir = path, path.parent
    elif path.is_dir():
        run_dir, model = path, path / "model.npz"
        if not model.exists():
            what = ", ".join(sorted(p.name for p in path.iterdir())) or "nothing"
            raise EvalError(f"{path}: no model.npz in the run directory (it holds {what}); "
                            "has training finished? (run_train.py writes model.npz at the end)")
    else:
        hint = " (a dangling link: its run was removed)" if path.is_symlink() else ""
        raise EvalError(f"{run}: no such run directory or model file{hint}; train one with run_train.py "
                        "or pass --run DIR")
    pretrain = run_dir / "pretrain_model.npz"
    return str(model), (str(pretrain) if pretrain.exists() else None)


@dataclass
class LoadedModel:
    path: str
    kind: str
    net: object
    params: object
    meta: dict
    normalizer: PoseNormalizer
    stats: ImageStats


def load_for_eval(path, kind, device="cpu"):
    """A model file of the given kind with its normaliser and image statistics, params on device."""
    try:
        net, params, meta = load_model(path)
    except CheckpointError as err:
        raise EvalError(str(err)) from None
    if meta["kind"] != kind:
        raise EvalError(f"{path}: a {meta['kind']} model, expected a {kind} model")
    offset = meta.get("normalizer", {}).get("offset", [])
    if len(offset) != POSE_DIM:
        raise EvalError(f"{path}: the model's poses have {len(offset)} coordinates ({len(offset) / 3:g} joints); "
                        f"the data has {h36m.N_JOINTS} joints ({POSE_DIM} coordinates)")
    try:
        normalizer = PoseNormalizer.from_dict(meta["normalizer"])
        stats = ImageStats.from_dict(meta["image_stats"])
    except (KeyError, TypeError, ValueError) as err:
        raise EvalError(f"{path}: unusable normaliser or image statistics in the model ({err})") from None
    return LoadedModel(str(path), kind, net, params.to(device), meta, normalizer, stats)


def check_normalizer(normalizer, bank_mm, data_path, model_path):
    """EvalError when the training poses of the data file do not fit the model's pose normaliser.

    On the data the model was trained on every normalised coordinate spans exactly [-0.9, 0.9]
    (PoseNormalizer.fit). Another data file in the same units and conventions stays near that;
    poses in other units (metres), another joint order or another normalisation spread over a
    sliver of it or far beyond it. Criteria: the median over coordinates of the normalised range
    (max - min) within a factor 4 of 1.8, and at most 5% of the values beyond |z| = 1.5.
    """
    z = normalizer.normalize(bank_mm).astype(np.float64)
    varying = np.ptp(np.asarray(bank_mm, dtype=np.float64).reshape(-1, POSE_DIM), axis=0) > 0
    spread = float(np.median(np.ptp(z[:, varying], axis=0))) if varying.any() and len(z) > 1 else 1.8
    outside = float((np.abs(z) > 1.5).mean())
    if outside > 0.05 or not 0.45 <= spread <= 7.2:
        raise EvalError(f"{model_path} and {data_path} disagree: through the model's pose normaliser the data's "
                        f"training poses span {spread:.3g} (median normalised range; 1.8 on the model's own "
                        f"training data) with {100 * outside:.1f}% of coordinates beyond 1.5: another data file, "
                        "units or normalisation?")


def _pose_param_names(net):
    return [n for layer in net.pose.layers for n in layer.param_shapes()]


def bank_fingerprint(net, params, normalizer, bank_mm):
    """sha256 of what the bank embeddings depend on: the pose branch (kind, parameter names, shapes,
    dtypes, values), the pose normaliser and the bank poses."""
    h = hashlib.sha256()
    h.update(f"bank{BANK_FORMAT}:{net.cfg.pose_embedding}".encode())
    for name in _pose_param_names(net):
        a = np.ascontiguousarray(to_host(params[name]))
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    h.update(normalizer.offset.tobytes())
    h.update(normalizer.scale.tobytes())
    h.update(np.ascontiguousarray(bank_mm, dtype=np.float32).tobytes())
    return h.hexdigest()


def bank_cache_path(model_path):
    """model.npz -> model.bank.npz beside it."""
    root, _ = os.path.splitext(str(model_path))
    return root + ".bank.npz"


@dataclass
class Bank:
    poses: np.ndarray      # (M, 17, 3) float32, root-relative mm
    rows: np.ndarray       # (M,) int64 rows of the data file
    emb: object            # (M, D) f_J on the evaluation device
    fingerprint: str
    source: str            # "cache" | "computed" | "computed (not cached: reason)"


def load_or_build_bank(model, bank_mm, rows, cache=True, chunk=8192):
    """Embeddings f_J of the bank poses for a LoadedModel, from the cache when it is valid."""
    fp = bank_fingerprint(model.net, model.params, model.normalizer, bank_mm)
    path = bank_cache_path(model.path)
    xp = backend.get_array_module(model.params[next(iter(model.params))])
    if cache and os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["fingerprint"]) == fp and z["emb"].shape[0] == len(bank_mm):
                    return Bank(bank_mm, rows, xp.asarray(z["emb"]), fp, "cache")
        except Exception:  # unreadable or foreign file: recompute and replace it
            pass
    emb = pose_embeddings(model.net, model.params, model.normalizer.normalize(bank_mm), chunk)
    source = "computed"
    if cache:
        from nn.params import save_npz_atomic
        try:
            save_npz_atomic(path, {"fingerprint": np.array(fp), "emb": to_host(emb).astype(np.float32),
                                   "rows": rows, "format": np.array(BANK_FORMAT)})
        except OSError as err:
            source = f"computed (not cached: {err.strerror or err})"
    return Bank(bank_mm, rows, emb, fp, source)


def _loader(dataset, model, idx, batch_size):
    try:
        return BatchLoader(dataset, idx, batch_size, train=False, stats=model.stats,
                           crop=model.net.cfg.input_size, downsample=model.net.cfg.downsample)
    except ValueError as err:
        raise EvalError(f"{model.path} does not fit {dataset.path}: {err}") from None


def _same_preprocessing(a, b):
    return (a.net.cfg.input_size == b.net.cfg.input_size and a.net.cfg.downsample == b.net.cfg.downsample
            and np.array_equal(a.stats.mean, b.stats.mean) and a.stats.scale == b.stats.scale)


# ============================================================================ evaluation
@dataclass
class EvalOutput:
    """Per-frame results of one pass over the test images."""
    rows: np.ndarray                       # (N,) data-file rows
    subjects: np.ndarray                   # (N,) str
    actions: np.ndarray                    # (N,) str
    A: int
    mpjpe: dict = field(default_factory=dict)      # mode -> (N,)
    pmpjpe: dict = field(default_factory=dict)     # mode -> (N,)
    sweep: dict = field(default_factory=dict)      # A -> {"mpjpe": (N,), "pmpjpe": (N,)}
    topk: dict = None                              # {"scores": (N,k), "bank_index": (N,k)}
    kept: dict = field(default_factory=dict)       # mode -> (len(keep), 17, 3) for the rows in keep
    kept_gt: np.ndarray = None
    keep_rows: np.ndarray = None
    distinct_top1: int = 0                         # distinct max-score bank poses (a collapse check)
    mean_pose_mpjpe: float = 0.0                   # MPJPE of the mean bank pose for every image (a reference)
    seconds: dict = field(default_factory=dict)


class Evaluator:
    """A trained run ready to evaluate: the StructNet model, the data file, the pose bank and,
    when wanted, the DconvMP-HML network.

    Evaluator(run, data=None, device="cpu", cache=True, hml=False, log=print)
    """

    def __init__(self, run="runs/latest", data=None, device="cpu", cache=True, hml=False, log=print):
        self.say = log
        if device not in ("cpu", "gpu"):
            raise EvalError(f"--device must be cpu or gpu, got {device!r}")
        if device == "gpu":
            try:
                backend.cupy()
            except RuntimeError as err:
                raise EvalError(str(err)) from None
        self.device = device
        self.model_path, self.pretrain_path = resolve_run(run)
        self.model = load_for_eval(self.model_path, "structnet", device)
        meta = self.model.meta
        self.data_path = str(data or meta.get("data") or "")
        if not self.data_path:
            raise EvalError(f"{self.model_path} names no data file; pass --data FILE")
        if not os.path.exists(self.data_path):
            raise EvalError(f"{self.data_path}: no such data file (the model's training data); pass --data FILE")
        self.dataset = PoseDataset(self.data_path)
        train_cfg = meta.get("train_config", {})
        self.train_subjects = tuple(meta.get("subjects") or train_cfg.get("subjects") or h36m.TRAIN_SUBJECTS)
        self.train_actions = tuple(train_cfg.get("actions") or ()) or None
        try:
            rows = self.dataset.select(subjects=list(self.train_subjects), actions=self.train_actions)
        except DatasetError as err:
            raise EvalError(f"the pose bank (the model's training poses) cannot be built from {self.data_path}: "
                            f"{err}") from None
        if len(rows) == 0:
            raise EvalError(f"{self.data_path} holds no training poses of {','.join(self.train_subjects)}")
        bank_mm = root_relative(self.dataset.poses(rows)).astype(np.float32)
        check_normalizer(self.model.normalizer, bank_mm, self.data_path, self.model_path)
        t = time.perf_counter()
        self.bank = load_or_build_bank(self.model, bank_mm, rows, cache=cache)
        self.bank_seconds = time.perf_counter() - t
        self.hml = None
        if hml:
            if self.pretrain_path is None:
                raise EvalError(f"mode hml needs pretrain_model.npz beside {self.model_path} (the pre-training "
                                "network, DconvMP-HML)")
            self.hml = load_for_eval(self.pretrain_path, "multitask", device)
            if not _same_preprocessing(self.model, self.hml):
                self.say("note: the pre-training network preprocesses images differently; reading them twice")

    @property
    def bank_size(self):
        return len(self.bank.poses)

    def _dev(self, a):
        return backend.to_device(a, self.device)

    def test_rows(self, subjects="test", actions=None, max_images=0):
        """Rows of the test images: subjects (names or 'test'), actions (None = all), evenly spaced
        subset of at most max_images (0 = all)."""
        try:
            idx = self.dataset.select(subjects=subjects, actions=actions)
        except DatasetError as err:
            raise EvalError(str(err)) from None
        if len(idx) == 0:
            raise EvalError(f"{self.data_path}: no images of subjects {subjects} and actions {actions or 'all'}")
        return evenly_spaced(idx, max_images)

    def skeletons(self, subjects):
        """The test subjects' skeletons (bone lengths of their T poses, as the paper's APF template)."""
        out = {}
        for s in subjects:
            try:
                out[s] = Skeleton.from_poses(self.dataset.tpose(s)[None])
            except (DatasetError, ValueError) as err:
                raise EvalError(f"no usable T pose of {s} for the APF/IK skeleton: {err}") from None
        return out

    def run(self, idx, modes, A, sweep=(), export_k=0, apf_config=APFConfig(), batch_size=256, chunk=16384,
            keep_rows=(), progress=True):
        """One streaming pass over the test rows idx; returns an EvalOutput.

        Per batch: the image network, top-k over the bank (k = the largest of A, the sweep's A and
        export_k), then every mode's prediction and its per-frame errors. The APF runs after the
        pass, per test subject, in slices of APF_SLICE images (its seeds depend on the position in
        the slice, so results do not depend on batch_size). Memory: batch x (chunk + k) scores, and
        O(N) per-frame outputs.
        """
        modes = tuple(modes)
        M = self.bank_size
        A = min(int(A), M)
        sweep = tuple(sorted({min(int(a), M) for a in sweep}))
        kmax = max([A if set(modes) & set(USES_A) else 1, *sweep, int(export_k), 1])
        kmax = min(kmax, M)
        use_bank = bool(set(modes) & {"max", *USES_A} or sweep or export_k)
        meta = self.dataset.metadata(idx)
        out = EvalOutput(rows=np.asarray(idx), subjects=meta["subject"], actions=meta["action"], A=A)
        N = len(idx)
        if "hml" in modes and self.hml is None:
            raise EvalError("mode hml requested but the DconvMP-HML network was not loaded (Evaluator(hml=True))")
        need_skel = {"apf", "ik"} & set(modes)
        skel = self.skeletons(sorted(set(out.subjects.tolist()), key=h36m.ALL_SUBJECTS.index)) if need_skel else {}
        errs = {m: np.empty(N, np.float64) for m in modes}
        perrs = {m: np.empty(N, np.float64) for m in modes}
        sw = {a: {"mpjpe": np.empty(N), "pmpjpe": np.empty(N)} for a in sweep}
        if export_k:
            out.topk = {"scores": np.empty((N, min(export_k, M)), np.float32),
                        "bank_index": np.empty((N, min(export_k, M)), np.int64)}
        keep_rows = np.asarray(keep_rows, dtype=np.int64)
        where = {int(r): i for i, r in enumerate(out.rows)}
        missing = [int(r) for r in keep_rows if int(r) not in where]
        if missing:
            raise ValueError(f"keep_rows: rows {missing[:5]} are not among the evaluated rows")
        keep_pos = np.array([where[int(r)] for r in keep_rows], dtype=np.int64)
        kept = {m: np.zeros((len(keep_rows), 17, 3), np.float32) for m in modes}
        kept_gt = np.zeros((len(keep_rows), 17, 3), np.float32)
        apf_targets = np.empty((N, 17, 3), np.float32) if "apf" in modes else None
        apf_inits = np.empty((N, 17, 3), np.float32) if "apf" in modes else None
        gts = np.empty((N, 17, 3), np.float32)
        timing = {"network": 0.0, "bank": 0.0, "hml": 0.0, "ik": 0.0, "apf": 0.0}
        top1 = set()

        loader = _loader(self.dataset, self.model, idx, batch_size)
        hml_loader = None
        if "hml" in modes and not _same_preprocessing(self.model, self.hml):
            hml_loader = _loader(self.dataset, self.hml, idx, batch_size)
        hml_batches = hml_loader.epoch(0) if hml_loader is not None else None
        bar = tqdm(total=N, desc="evaluating", unit="img", disable=not progress, file=sys.stderr, dynamic_ncols=True)
        start = 0
        for batch in loader.epoch(0):
            n = len(batch.index)
            sl = slice(start, start + n)
            gt = batch.poses
            gts[sl] = gt
            t = time.perf_counter()
            images = self._dev(batch.images)
            f_I, f_P = image_outputs(self.model.net, self.model.params, images)
            timing["network"] += time.perf_counter() - t
            t = time.perf_counter()
            preds = {}
            if use_bank:
                top_s, top_i = top_k_scores(f_I, self.bank.emb, kmax, chunk)
                top_s, top_i = to_host(top_s), to_host(top_i)
                top1.update(top_i[:, 0].tolist())
            if "max" in modes:
                preds["max"] = self.bank.poses[top_i[:, 0]]
            avgs = average_prefixes(top_i, self.bank.poses, [A, *sweep]) if (set(modes) & set(USES_A) or sweep) \
                else {}
            if "avg" in modes:
                preds["avg"] = avgs[A]
            timing["bank"] += time.perf_counter() - t
            if export_k:
                out.topk["scores"][sl] = top_s[:, :export_k]
                out.topk["bank_index"][sl] = top_i[:, :export_k]
            if "pred" in modes:
                preds["pred"] = self.model.normalizer.denormalize(to_host(f_P))
            if "hml" in modes:
                t = time.perf_counter()
                x = self._dev(next(hml_batches).images) if hml_batches is not None else images
                preds["hml"] = self.hml.normalizer.denormalize(to_host(
                    regression_outputs(self.hml.net, self.hml.params, x)))
                timing["hml"] += time.perf_counter() - t
            if "ik" in modes:
                t = time.perf_counter()
                ik = np.empty((n, 17, 3), np.float32)
                for s in np.unique(out.subjects[sl]):
                    m = out.subjects[sl] == s
                    ik[m] = skel[s].forward(skel[s].inverse(avgs[A][m]))
                preds["ik"] = ik
                timing["ik"] += time.perf_counter() - t
            if "apf" in modes:
                apf_targets[sl] = avgs[A]
                apf_inits[sl] = self.bank.poses[top_i[:, 0]]
            for m, p in preds.items():
                errs[m][sl] = mpjpe(p, gt)
                perrs[m][sl] = p_mpjpe(p, gt)
            for a in sweep:
                sw[a]["mpjpe"][sl] = mpjpe(avgs[a], gt)
                sw[a]["pmpjpe"][sl] = p_mpjpe(avgs[a], gt)
            here = np.flatnonzero((keep_pos >= start) & (keep_pos < start + n))
            kept_gt[here] = gt[keep_pos[here] - start]
            for m, p in preds.items():
                kept[m][here] = p[keep_pos[here] - start]
            start += n
            bar.update(n)
        bar.close()

        if "apf" in modes:
            t = time.perf_counter()
            apf = self._apf(out.subjects, apf_targets, apf_inits, skel, apf_config, progress)
            timing["apf"] = time.perf_counter() - t
            errs["apf"] = mpjpe(apf, gts)
            perrs["apf"] = p_mpjpe(apf, gts)
            kept["apf"] = apf[keep_pos].astype(np.float32)
        out.mpjpe, out.pmpjpe, out.sweep = errs, perrs, sw
        out.kept, out.kept_gt, out.keep_rows = kept, kept_gt, keep_rows
        out.seconds = timing
        out.distinct_top1 = len(top1)
        mean_pose = self.bank.poses.mean(axis=0, dtype=np.float64)
        out.mean_pose_mpjpe = float(mpjpe(np.broadcast_to(mean_pose, gts.shape), gts).mean())
        return out

    def _apf(self, subjects, targets, inits, skel, config, progress):
        """StructNet-Avg(A)-APF for all images, per subject in slices of APF_SLICE images; slice j of
        subject s uses seed SeedSequence([config.seed, subject number, j]) folded into one integer."""
        out = np.empty_like(targets)
        jobs = []
        for s in sorted(set(subjects.tolist()), key=h36m.ALL_SUBJECTS.index):
            pos = np.flatnonzero(subjects == s)
            for j in range(0, len(pos), APF_SLICE):
                jobs.append((s, j // APF_SLICE, pos[j:j + APF_SLICE]))
        bar = tqdm(total=len(targets), desc="APF", unit="img", disable=not progress, file=sys.stderr,
                   dynamic_ncols=True)
        for s, j, pos in jobs:
            seed = int(np.random.SeedSequence([int(config.seed), h36m.ALL_SUBJECTS.index(s), j]).generate_state(1)[0])
            cfg = APFConfig(**{**asdict(config), "seed": seed})
            out[pos] = refine_poses(skel[s], targets[pos], inits[pos], cfg)
            bar.update(len(pos))
        bar.close()
        return out

    def alignment(self, max_images=2000, batch_size=256, chunk=16384, keep_embeddings=False, progress=True):
        """The training-set alignment statistic (Sec. 6): share of training images (evenly spaced,
        at most max_images) whose max-score bank pose is within 30 mm MPJPE of their ground truth.

        Returns {"share_30mm", "images", "median_mm", "mean_mm"}; with keep_embeddings also
        "positions" (bank positions of the images) and "f_I" (their image embeddings, host).
        """
        pos = evenly_spaced(np.arange(self.bank_size), max_images)
        loader = _loader(self.dataset, self.model, self.bank.rows[pos], batch_size)
        errs, embs = [], []
        s1 = s2 = 0.0
        bar = tqdm(total=len(pos), desc="alignment", unit="img", disable=not progress, file=sys.stderr,
                   dynamic_ncols=True)
        for batch in loader.epoch(0):
            f_I, _ = image_outputs(self.model.net, self.model.params, self._dev(batch.images))
            _, top = top_k_scores(f_I, self.bank.emb, 1, chunk)
            errs.append(mpjpe(self.bank.poses[to_host(top)[:, 0]], batch.poses))
            f = to_host(f_I).astype(np.float64)
            s1, s2 = s1 + f.sum(axis=0), s2 + (f * f).sum(axis=0)
            if keep_embeddings:
                embs.append(to_host(f_I))
            bar.update(len(batch.index))
        bar.close()
        e = np.concatenate(errs)
        mean = s1 / len(e)
        std = np.sqrt(np.maximum(s2 / len(e) - mean * mean, 0))
        # spread of the image embedding across images relative to its size: ~0 = collapsed
        spread = float(std.mean() / max(np.abs(mean).mean(), 1e-12)) if np.abs(mean).mean() > 0 else 0.0
        res = {"share_30mm": float((e <= ALIGN_THRESHOLD_MM).mean()), "images": int(len(e)),
               "median_mm": float(np.median(e)), "mean_mm": float(e.mean()), "f_I_relative_spread": spread}
        if keep_embeddings:
            res["positions"] = pos
            res["f_I"] = np.concatenate(embs)
        return res


# ============================================================================ results
def mode_results(output, modes, subjects, context=None):
    """The JSON objects of run_eval --json: one per mode, then one per sweep value of A (mode
    "avg", "sweep": true). See docs/eval.md for the schema."""
    objs = []

    def obj(mode, A, e, pe, sweep=False):
        m, pm = summarize(e, output.actions), summarize(pe, output.actions)
        return {"mode": mode, "method": method_name(mode, A), "in_paper": mode in PAPER_MODES,
                "A": A, "sweep": sweep, "subjects": list(subjects),
                "actions": list(m["per_action"]), "n_frames": m["n"],
                "mpjpe": m["per_action"], "mpjpe_all_frames": m["all_frames"],
                "mpjpe_all_frames_std": m["all_frames_std"], "mpjpe_action_mean": m["action_mean"],
                "pmpjpe": pm["per_action"], "pmpjpe_all_frames": pm["all_frames"],
                "pmpjpe_all_frames_std": pm["all_frames_std"], "pmpjpe_action_mean": pm["action_mean"],
                "context": context or {}}

    for mode in modes:
        A = output.A if mode in USES_A else (1 if mode == "max" else None)
        objs.append(obj(mode, A, output.mpjpe[mode], output.pmpjpe[mode]))
    for a, v in output.sweep.items():
        objs.append(obj("avg", a, v["mpjpe"], v["pmpjpe"], sweep=True))
    return objs


def format_table(results, metric="mpjpe", title=""):
    """Table 1 as text: one row per action, one column per result (mean (std) over frames), then
    the mean over all frames and the mean over actions."""
    cols = [r["method"].replace("StructNet-", "") for r in results]
    actions = list(results[0][metric])
    width = max(16, *(len(c) + 2 for c in cols))
    lines = [title] if title else []
    if any(r["method"].startswith("StructNet-") for r in results):
        lines.append("(columns: StructNet-<column>" + ("; DconvMP-HML: the multi-task baseline of [18])"
                                                       if any(r["mode"] == "hml" for r in results) else ")"))
    head = f"{'Action':<14}{'frames':>7}" + "".join(f"{c:>{width}}" for c in cols)
    lines += [head, "-" * len(head)]
    for a in actions:
        cells = "".join(f"{r[metric][a]['mean']:>{width - 8}.2f} ({r[metric][a]['std']:5.1f})"
                        if a in r[metric] else f"{'-':>{width}}" for r in results)
        lines.append(f"{a:<14}{results[0][metric][a]['n']:>7}" + cells)
    lines.append("-" * len(head))
    lines.append(f"{'All (frames)':<14}{results[0]['n_frames']:>7}" + "".join(
        f"{r[metric + '_all_frames']:>{width - 8}.2f} ({r[metric + '_all_frames_std']:5.1f})" for r in results))
    lines.append(f"{'All (actions)':<14}{len(actions):>7}" + "".join(
        f"{r[metric + '_action_mean']:>{width - 8}.2f}{'':>8}" for r in results))
    return "\n".join(lines)


def save_topk(path, output, bank, k, dataset):
    """Multiple hypotheses per test image (npz): poses (N,k,17,3) root-relative mm, scores (N,k)
    best first, bank_index (N,k) positions in the bank, bank_rows (N,k) their data-file rows, and
    per image rows, subject, action, camera, frame and gt (N,17,3)."""
    idx = output.topk["bank_index"][:, :k]
    meta = dataset.metadata(output.rows)
    from nn.params import save_npz_atomic
    save_npz_atomic(path, {
        "poses": bank.poses[idx], "scores": output.topk["scores"][:, :k], "bank_index": idx,
        "bank_rows": bank.rows[idx], "rows": output.rows,
        "subject": meta["subject"].astype(str), "action": meta["action"].astype(str),
        "camera": meta["camera"].astype(str), "frame": meta["frame"],
        "gt": root_relative(dataset.poses(output.rows)).astype(np.float32)})


def write_json(path, results):
    """Atomic JSON write of the result list."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, path)


# ============================================================================ the whole protocol
def _skeleton_rows(rows, subjects, actions, n=6):
    """Up to n test rows for the skeleton picture: evenly spaced actions, the subjects taken in
    turn, the middle image of each (subject, action)."""
    names = [a for a in h36m.ACTIONS if a in set(actions.tolist())]
    subs = [s for s in h36m.ALL_SUBJECTS if s in set(subjects.tolist())]
    picks = [names[i] for i in np.unique(np.round(np.linspace(0, len(names) - 1, min(n, len(names)))).astype(int))]
    out = []
    for i, a in enumerate(picks):
        r = rows[(actions == a) & (subjects == subs[i % len(subs)])]
        if len(r) == 0:
            r = rows[actions == a]
        out.append(int(r[len(r) // 2]))
    return np.array(out, dtype=np.int64)


def _write_figures(ev, output, modes, results, align, figures_dir, sweep, full, say):
    from . import figures
    os.makedirs(figures_dir, exist_ok=True)
    written = []
    if sweep:
        points = {r["A"]: (r["mpjpe_all_frames"], r["mpjpe_action_mean"]) for r in results if r["sweep"]}
        mx = next(((r["mpjpe_all_frames"], r["mpjpe_action_mean"]) for r in results if r["mode"] == "max"), None)
        written.append(figures.figure3(os.path.join(figures_dir, "fig3_error_vs_A.png"), points, mx,
                                       paper_A=output.A, bank_size=ev.bank_size))
    if align is not None and "f_I" in align:
        pos = align["positions"]
        rows = ev.bank.rows[pos]
        subjects = ev.dataset.metadata(rows)["subject"]
        mask = subjects == subjects[0]
        images = ev.dataset.read_images(rows)
        written.append(figures.figure4(os.path.join(figures_dir, "fig4_embedding.png"), align["f_I"],
                                       to_host(ev.bank.emb[pos]), images, ev.bank.poses[pos], image_mask=mask))
    elif full:
        say("note: Figure 4 needs training images (--train-images > 0); skipped")
    if len(output.keep_rows):
        shown = [m for m in ("apf", "avg", "ik", "max", "pred", "hml") if m in modes][:1]
        if "max" in modes and shown != ["max"]:
            shown.append("max")
        rows = output.keep_rows
        meta = ev.dataset.metadata(rows)
        cams = [ev.dataset.cameras[c] for c in meta["camera"]]
        absolute = ev.dataset.poses(rows).astype(np.float64)
        root = absolute[:, :1]
        images = ev.dataset.read_images(rows)
        preds = {method_name(m, output.A): output.kept[m] for m in shown}
        joints2d = {"ground truth": figures.crop_joints(absolute, cams, ev.dataset.boxes(rows), images.shape[1])}
        for label, p in preds.items():
            joints2d[label] = figures.crop_joints(p + root, cams, ev.dataset.boxes(rows), images.shape[1])
        titles = [f"{s} {a}, camera {c}, frame {f}" for s, a, c, f in
                  zip(meta["subject"], meta["action"], meta["camera"], meta["frame"])]
        written.append(figures.skeleton_figure(os.path.join(figures_dir, "skeletons.png"), images, joints2d,
                                               output.kept_gt, preds, titles))
    return written


def run_evaluation(run="runs/latest", data=None, subjects=h36m.TEST_SUBJECTS, actions=None, modes=MODES,
                   modes_explicit=True, A=None, sweep=(), export_topk=None, train_images=2000,
                   apf_config=APFConfig(), json_path="", figures_dir="", max_images=0, device="cpu",
                   batch_size=256, chunk=16384, cache=True, progress=True, log=print):
    """run_eval.py's work: load the run, evaluate every mode on the test rows, print Table 1, the
    P-MPJPE table and the alignment statistic, write the JSON, the top-k file and the figures.
    Returns the list of result objects (the JSON). EvalError for anything the user can fix."""
    say = log
    modes = tuple(modes)
    model_path, pretrain_path = resolve_run(run)
    if "hml" in modes and pretrain_path is None:
        if modes_explicit:
            raise EvalError(f"mode hml (DconvMP-HML) needs pretrain_model.npz beside {model_path}")
        say(f"note: no pretrain_model.npz beside {model_path}: DconvMP-HML (hml) skipped")
        modes = tuple(m for m in modes if m != "hml")
    ev = Evaluator(run, data, device, cache=cache, hml="hml" in modes, log=say)
    M = ev.bank_size
    A_auto = A is None
    A = default_A(M) if A_auto else min(int(A), M)
    subjects = [s for s in h36m.parse_subjects(subjects)]
    idx = ev.test_rows(subjects, actions, max_images)
    present = [s for s in subjects if s in set(ev.dataset.metadata(idx)["subject"].tolist())]
    k_export = export_topk[0] if export_topk else 0
    cfg = ev.model.net.cfg
    say(f"model: {ev.model_path} (input {cfg.input_size}x{cfg.input_size}, embedding {ev.bank.emb.shape[1]}-d, "
        f"{cfg.pose_embedding} pose embedding); data: {ev.data_path}")
    say(f"pose bank: {M} training poses of {','.join(ev.train_subjects)}; embeddings {ev.bank.source} "
        f"({ev.bank_seconds:.2f} s)")
    rule = f"default: 0.5% of the {M}-pose bank, as the paper's 500 of ~100k" if A_auto else "given"
    say(f"A = {A} ({rule}); test: {','.join(present)}, {len(idx)} images"
        + (f" (evenly spaced subset, --max-images {max_images})" if max_images else ""))
    overlap = sorted(set(present) & set(ev.train_subjects))
    if overlap:
        say(f"note: {','.join(overlap)} are training subjects: their poses are in the bank")
    test_meta = ev.dataset.metadata(idx)
    keep = _skeleton_rows(idx, test_meta["subject"], test_meta["action"]) if figures_dir else ()
    output = ev.run(idx, modes, A, sweep=sweep, export_k=k_export, apf_config=apf_config, batch_size=batch_size,
                    chunk=chunk, keep_rows=keep, progress=progress)
    align = None
    if train_images > 0:
        align = ev.alignment(train_images, batch_size, chunk, keep_embeddings=bool(figures_dir), progress=progress)
    context = {"model": ev.model_path, "pretrain_model": ev.pretrain_path if "hml" in modes else None,
               "data": ev.data_path, "device": device, "bank_poses": M, "bank_subjects": list(ev.train_subjects),
               "A_rule": rule, "max_images": max_images, "distinct_top1": output.distinct_top1,
               "mean_pose_mpjpe": output.mean_pose_mpjpe,
               "test_rows_first_last": [int(idx[0]), int(idx[-1])],
               "apf": asdict(apf_config) if "apf" in modes else None,
               "train_alignment": {k: v for k, v in align.items() if k not in ("f_I", "positions")} if align else None,
               "seconds": {k: round(v, 3) for k, v in output.seconds.items()}}
    results = mode_results(output, modes, present, context)
    main = [r for r in results if not r["sweep"]]
    say("")
    say(format_table(main, "mpjpe", f"Table 1: MPJPE (mm) on {','.join(present)}: mean (std) over the frames "
                                    f"of each action"))
    say("")
    say(format_table(main, "pmpjpe", "P-MPJPE (mm, after a similarity Procrustes alignment per frame): "
                                     "mean (std) over frames"))
    swept = [r for r in results if r["sweep"]]
    if swept:
        say("")
        say("StructNet-Avg(A) versus A (Figure 3), MPJPE (mm): "
            + ", ".join(f"A={r['A']}: {r['mpjpe_all_frames']:.2f} / {r['mpjpe_action_mean']:.2f}" for r in swept)
            + "  (all frames / mean of actions)")
    say("")
    say("All (frames): mean over every test frame; All (actions): unweighted mean of the per-action means; "
        "std over frames (ddof 0).")
    if "ik" in modes:
        say("* StructNet-Avg(A)-IK is not in the paper: skeleton.forward(skeleton.inverse(Avg(A))) with the test "
            "subject's skeleton; the paper's valid-pose variant is StructNet-Avg(A)-APF.")
    if align:
        say(f"training-set alignment: {100 * align['share_30mm']:.1f}% of {align['images']} training images have "
            f"their max-score pose within 30 mm MPJPE of the ground truth (median {align['median_mm']:.1f} mm; "
            "paper: 97%)")
        if align["f_I_relative_spread"] < 1e-3:
            say(f"warning: the image embedding is nearly the same for every training image (spread "
                f"{align['f_I_relative_spread']:.1e} of its size): the model looks collapsed")
    if output.distinct_top1:
        say(f"max-score poses: {output.distinct_top1} distinct bank poses over {len(idx)} test images")
    say(f"reference: the mean training pose, predicted for every test image, has MPJPE {output.mean_pose_mpjpe:.2f} mm "
        "(all frames)")
    say("time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in output.seconds.items() if v > 0))
    if json_path:
        write_json(json_path, results)
        say(f"wrote {json_path}")
    if export_topk:
        save_topk(export_topk[1], output, ev.bank, k_export, ev.dataset)
        say(f"wrote {export_topk[1]}: top-{min(k_export, M)} poses and scores of {len(idx)} test images")
    fig_dir = figures_dir or (os.path.join(os.path.dirname(ev.model_path), "eval") if sweep else "")
    if fig_dir:
        for path in _write_figures(ev, output, modes, results, align, fig_dir, sweep, bool(figures_dir), say):
            say(f"wrote {path}")
    return results

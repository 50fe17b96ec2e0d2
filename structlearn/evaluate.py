"""Evaluation of a trained StructNet on the paper's protocol (Sec. 5.2, Table 1): the modes, the
streaming pass over the test images (Evaluator), the training-set alignment statistic (Sec. 6),
the bank floor (the nearest bank pose, beside the mean pose as a reference) and the per-action
aggregation. structlearn.protocol runs it end to end; structlearn.report prints and writes the
results; structlearn.bank holds the pose bank; structlearn.curves runs it on the trainer's
parameters (--eval-every).

Modes (predictions per test image; poses root-relative, mm, 17 joints):
    max   StructNet-Max            the bank pose of maximum score <f_I(x), f_J(y)> (eq. 4)
    avg   StructNet-Avg(A)         the mean of the A highest-scoring bank poses
    apf   StructNet-Avg(A)-APF     apf.refine_poses: the test subject's skeleton (from its T pose),
                                   target the Avg(A) pose, started from the top-1 pose (with
                                   APFConfig.starts = S > 1, also from the S - 1 top-A poses nearest
                                   the target, keeping the best run: apf.choose_starts)
    pred  StructNet-Pred           the auxiliary output f_P (eq. 10), denormalised
    hml   DconvMP-HML              the regression head of the pre-training network ([18])
    ik    StructNet-Avg(A)-IK      (not in the paper) skeleton.forward(skeleton.inverse(Avg(A))) with
                                   the test subject's skeleton: keeps the bone directions of the
                                   average, restores its bone lengths

Metrics (data.metrics): MPJPE (eq. 8, Protocol #1), P-MPJPE (after a similarity Procrustes
alignment, Protocol #2) and N-MPJPE (after the least-squares scale) per frame; per action: mean,
standard deviation over frames (ddof 0) and frame count; overall: the mean over all frames ("all
frames") and the unweighted mean of the per-action means ("action mean"). Both are reported
because papers differ. Over StructNet's ranking of the bank (structlearn.retrieval): best-of-k
MPJPE (the multi-hypothesis oracle) and, with retrieval, Hit@k of the bank poses and of the
cross-view retrieval of test images.
"""
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm import tqdm

from apf import APFConfig, choose_starts, refine_poses
from data import h36m
from data.dataset import DatasetError, PoseDataset, root_relative
from data.h36m import N_JOINTS
from data.loader import BatchLoader
from data.metrics import mpjpe, n_mpjpe, nearest_pose, p_mpjpe
from data.skeleton import Skeleton
from nn import backend
from nn.comm import Comm, Shard

from .bank import Bank, check_normalizer, load_or_build_bank, training_poses
from .inference import (average_prefixes, image_outputs, merge_top_k, pose_embeddings, regression_outputs, to_host,
                        top_k_scores)
from .retrieval import (RETRIEVAL_KS, RETRIEVAL_MM, best_of_k, cross_view, image_to_pose, ranked_pmpjpe,
                        threshold_rule)
from .trained_run import EvalError, LoadedModel, load_for_eval, resolve_run

MODES = ("max", "avg", "apf", "ik", "pred", "hml")
PAPER_MODES = ("max", "avg", "apf", "pred", "hml")
USES_A = ("avg", "apf", "ik")
# the prediction a run shows when it shows one (the skeleton figure, --export-vp3d): the paper's
# valid-pose variant first
PREFERRED = ("apf", "avg", "ik", "max", "pred", "hml")
# per-frame errors, by their JSON key: Protocol #1, Protocol #2, scale-aligned
METRICS = {"mpjpe": mpjpe, "pmpjpe": p_mpjpe, "n_mpjpe": n_mpjpe}
BEST_OF = (1, 5, 10, 20, 50)  # --best-of default: k of the best-of-k MPJPE over the top-k bank poses
A_FRACTION = 0.005          # the paper's A = 500 is ~0.5% of its ~100k training poses (Sec. 5.4)
# --sweep-A auto (Figure 3): A as these shares of the bank, around the paper's 0.5% (its Figure 3
# spans A = 1 to 1,500 of ~100k poses, and the error "stabilizes between A = 500 and A = 1000")
SWEEP_SHARES = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05)
ALIGN_THRESHOLD_MM = 30.0   # Sec. 6: share of max-score training poses within 30 mm
APF_SLICE = 256             # images per APF call (its per-image seeds depend on the slice only)


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


def clipped(values, bank_size):
    """Counts of bank poses (A, k) clipped to [1, bank_size], sorted, unique."""
    return tuple(sorted({int(min(max(1, int(a)), bank_size)) for a in values}))


def sweep_values(sweep, bank_size):
    """The A of a sweep: sweep is "auto" (SWEEP_SHARES of the bank, each rounded, at least 1,
    duplicates dropped) or a sequence of A; every A clipped to the bank size, sorted, unique."""
    if isinstance(sweep, str):
        if sweep != "auto":
            raise ValueError(f"sweep: expected 'auto' or a list of A, got {sweep!r}")
        sweep = [round(s * bank_size) for s in SWEEP_SHARES]
    return clipped(sweep, bank_size)


def frame_errors(pred, gt):
    """{metric: (N,) per-frame error} of predictions (N, 17, 3) for every metric of METRICS."""
    return {name: f(pred, gt) for name, f in METRICS.items()}


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


# ============================================================================ the streaming pass
def _loader(dataset, model, idx, batch_size):
    try:
        return BatchLoader(dataset, idx, batch_size, train=False, stats=model.stats,
                           crop=model.net.cfg.input_size, downsample=model.net.cfg.downsample)
    except ValueError as err:
        raise EvalError(f"{model.path} does not fit {dataset.path}: {err}") from None


def _check_device(device):
    if device not in ("cpu", "gpu"):
        raise EvalError(f"--device must be cpu or gpu, got {device!r}")
    if device == "gpu":
        try:
            backend.cupy()
        except RuntimeError as err:
            raise EvalError(str(err)) from None


def _same_preprocessing(a, b):
    return (a.net.cfg.input_size == b.net.cfg.input_size and a.net.cfg.downsample == b.net.cfg.downsample
            and np.array_equal(a.stats.mean, b.stats.mean) and a.stats.scale == b.stats.scale)


@dataclass
class EvalOutput:
    """Per-frame results of one pass over the test images."""
    rows: np.ndarray                       # (N,) data-file rows
    subjects: np.ndarray                   # (N,) str
    actions: np.ndarray                    # (N,) str
    A: int
    mpjpe: dict = field(default_factory=dict)      # mode -> (N,)
    pmpjpe: dict = field(default_factory=dict)     # mode -> (N,)
    n_mpjpe: dict = field(default_factory=dict)    # mode -> (N,)
    sweep: dict = field(default_factory=dict)      # A -> {"mpjpe": (N,), "pmpjpe": (N,), "n_mpjpe": (N,)}
    best_of: dict = field(default_factory=dict)    # k -> (N,) MPJPE of the best of the k top-scoring bank poses
    retrieval: dict = None                         # {"threshold_mm", "rule", "ks", "image_to_pose", "cross_view"}
    predictions: dict = field(default_factory=dict)  # mode -> (N, 17, 3) for the keep_mode of run()
    gt: np.ndarray = None                          # (N, 17, 3) root-relative ground truth, mm
    topk: dict = None                              # {"scores": (N,k), "bank_index": (N,k)}
    kept: dict = field(default_factory=dict)       # mode -> (len(keep), 17, 3) for the rows in keep
    kept_gt: np.ndarray = None
    keep_rows: np.ndarray = None
    distinct_top1: int = 0                         # distinct max-score bank poses (a collapse check)
    mean_pose_mpjpe: float = 0.0                   # MPJPE of the mean bank pose for every image (a reference)
    bank_floor: np.ndarray = None                  # (N,) MPJPE of the nearest bank pose (data.metrics.nearest_pose)
    bank_size: int = 0                             # M, the poses of the bank
    seconds: dict = field(default_factory=dict)


class Evaluator:
    """A trained run ready to evaluate: the StructNet model, the data file, the pose bank and,
    when wanted, the DconvMP-HML network.

    Evaluator(run, data=None, device="cpu", cache=True, hml=False, log=print) loads a run from
    disk; Evaluator.in_memory(...) evaluates parameters held by the trainer (--eval-every).

    comm (nn.comm, docs/mpi.md): the ranks share the test (and training) images, or with
    shard_bank each scores every image against its own shard of the bank (its embeddings only)
    and the per-rank top lists are merged exactly; the APF and the bank floor are shared either
    way. Every rank's run() returns the whole EvalOutput (the cross-view retrieval on rank 0 only).
    """

    def __init__(self, run="runs/latest", data=None, device="cpu", cache=True, hml=False, log=print, comm=None,
                 shard_bank=False):
        _check_device(device)
        self.comm = comm or Comm()
        if device == "gpu" and self.comm.size > 1:
            backend.use_device(self.comm.local_rank)    # one GPU per rank
        self.bank_shard = None
        if shard_bank and self.comm.size > 1:
            self.bank_shard = True      # made in _setup, once the bank's size is known
        self.model_path, self.pretrain_path = resolve_run(run)
        model = load_for_eval(self.model_path, "structnet", device)
        meta = model.meta
        data_path = str(data or meta.get("data") or "")
        if not data_path:
            raise EvalError(f"{self.model_path} names no data file; pass --data FILE")
        if not os.path.exists(data_path):
            raise EvalError(f"{data_path}: no such data file (the model's training data); pass --data FILE")
        train_cfg = meta.get("train_config", {})
        subjects = tuple(meta.get("subjects") or train_cfg.get("subjects") or h36m.TRAIN_SUBJECTS)
        self._setup(model, PoseDataset(data_path), subjects, tuple(train_cfg.get("actions") or ()) or None,
                    device, cache, log)
        self.hml = None
        if hml:
            if self.pretrain_path is None:
                raise EvalError(f"mode hml needs pretrain_model.npz beside {self.model_path} (the pre-training "
                                "network, DconvMP-HML)")
            self.hml = load_for_eval(self.pretrain_path, "multitask", device)
            if not _same_preprocessing(self.model, self.hml):
                self.say("note: the pre-training network preprocesses images differently; reading them twice")

    @classmethod
    def in_memory(cls, net, params, normalizer, stats, dataset, subjects, actions=None, device="cpu", log=print):
        """An Evaluator of parameters in memory (a StructNet's, on device), read, never written:
        the trainer's (structlearn.curves). The bank embeddings are computed, never cached;
        refresh(params) recomputes them after the parameters changed."""
        _check_device(device)
        ev = cls.__new__(cls)
        ev.model_path = ev.pretrain_path = ev.hml = None
        ev.comm, ev.bank_shard = Comm(), None
        model = LoadedModel("<in-memory parameters>", "structnet", net, params, {}, normalizer, stats)
        ev._setup(model, dataset, tuple(subjects), tuple(actions or ()) or None, device, False, log)
        return ev

    def _setup(self, model, dataset, train_subjects, train_actions, device, cache, log):
        """The model, the data file, the training images and the pose bank (structlearn.bank.pose_space,
        Algorithm 1's pose space Y) with its embeddings."""
        self.say, self.device, self.model, self.dataset = log, device, model, dataset
        self.data_path = dataset.path
        self.train_subjects, self.train_actions = train_subjects, train_actions
        self.cache = cache
        bidx, bank_mm = training_poses(dataset, train_subjects, train_actions, self.data_path)
        check_normalizer(model.normalizer, bank_mm, self.data_path, model.path)
        # the training images (for the alignment statistic): the image rows of the same subjects and actions
        self.train_rows = dataset.select(subjects=list(train_subjects),
                                         actions=None if train_actions is None else list(train_actions))
        self._floors = {}
        t = time.perf_counter()
        rows = dataset.bank_image_rows(bidx)
        if self.bank_shard:   # this rank's shard of the bank: its embeddings only, never cached
            if len(bank_mm) < self.comm.size:
                raise EvalError(f"--shard-bank: the {len(bank_mm)}-pose bank has fewer poses than the "
                                f"{self.comm.size} MPI processes")
            sh = self.bank_shard = self.comm.shard(len(bank_mm))
            emb = pose_embeddings(model.net, model.params, model.normalizer.normalize(bank_mm[sh.rows]))
            self.bank = Bank(bank_mm, bidx, rows, emb, "", f"computed (shard {sh.lo}:{sh.hi} of rank {self.comm.rank})")
        else:
            if self.comm.size > 1 and not self.comm.root:
                self.comm.barrier()     # rank 0 builds (and caches) the embeddings first
            self.bank = load_or_build_bank(model, bank_mm, bidx, rows, cache=cache)
            if self.comm.size > 1 and self.comm.root:
                self.comm.barrier()
        self.bank_seconds = time.perf_counter() - t

    def refresh(self, params):
        """New parameters of the same network (the trainer's, after more epochs): the bank
        embeddings f_J are recomputed, since the pose branch changed."""
        self.model.params = params
        t = time.perf_counter()
        self.bank = load_or_build_bank(self.model, self.bank.poses, self.bank.index, self.bank.rows, cache=self.cache)
        self.bank_seconds = time.perf_counter() - t

    def bank_floor(self, idx):
        """The bank floor of test rows idx: (N,) float64 MPJPE of the nearest bank pose to each
        test pose (data.metrics.nearest_pose), memoised per idx: it depends on the bank only, not the model.
        Under MPI each rank computes a shard of the rows (exact per row)."""
        key = np.asarray(idx, dtype=np.int64).tobytes()
        if key not in self._floors:
            sh = self.comm.shard(len(idx))
            gt = root_relative(self.dataset.poses(np.asarray(idx)[sh.rows])).astype(np.float32)
            floor = nearest_pose(self.bank.poses, gt)[0] if len(gt) else np.empty(0, np.float32)
            self._floors[key] = self.comm.concat_rows(floor).astype(np.float64)
        return self._floors[key]

    def _top_k(self, f_I, k, chunk):
        """top_k_scores of f_I (B, D) over the bank; with a sharded bank, every rank's over its shard,
        merged (inference.merge_top_k) into the exact top k of the whole bank (host arrays)."""
        if self.bank_shard is None:
            return top_k_scores(f_I, self.bank.emb, k, chunk)
        s, i = top_k_scores(f_I, self.bank.emb, k, chunk)
        lists = self.comm.allgather((to_host(s), to_host(i) + self.bank_shard.lo))
        return merge_top_k(lists, min(int(k), self.bank_size))

    def _images_shard(self, n):
        """The rows of n images this rank evaluates: a Shard of them when the ranks share the
        images, all of them in one process or with a sharded bank."""
        return self.comm.shard(n) if self.bank_shard is None else Shard(0, n, n)

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
            keep_rows=(), progress=True, best_of=(), retrieval=False, retrieval_mm=RETRIEVAL_MM, keep_mode=None):
        """One streaming pass over the test rows idx; returns an EvalOutput.

        Per batch: the image network, top-k over the bank (k = the largest of A, the sweep's A,
        export_k, best_of and, with retrieval, max(RETRIEVAL_KS)), then every mode's prediction and
        its per-frame errors, the best-of-k MPJPE over the k best poses and their P-MPJPE (for
        Hit@k). The APF runs after the pass, per test subject, in slices of APF_SLICE images (its
        seeds depend on the position in the slice, so results do not depend on batch_size).
        retrieval also keeps f_I (N, D) for the cross-view retrieval after the pass; keep_mode
        keeps that mode's predictions (N, 17, 3). Memory: batch x (chunk + k) scores, and O(N)
        per-frame outputs.
        """
        modes = tuple(modes)
        M = self.bank_size
        A = min(int(A), M)
        sweep = sweep_values(sweep, M)
        best_of = clipped(best_of, M) if len(best_of) else ()
        ranked_k = min(max([*best_of, max(RETRIEVAL_KS) if retrieval else 0]), M)   # ranked poses scored per image
        kmax = max([A if set(modes) & set(USES_A) else 1, *sweep, int(export_k), ranked_k, 1])
        kmax = min(kmax, M)
        use_bank = bool(set(modes) & {"max", *USES_A} or sweep or export_k or ranked_k)
        meta = self.dataset.metadata(idx)
        out = EvalOutput(rows=np.asarray(idx), subjects=meta["subject"], actions=meta["action"], A=A, bank_size=M)
        N = len(idx)
        if "hml" in modes and self.hml is None:
            raise EvalError("mode hml requested but the DconvMP-HML network was not loaded (Evaluator(hml=True))")
        need_skel = {"apf", "ik"} & set(modes)
        skel = self.skeletons(sorted(set(out.subjects.tolist()), key=h36m.ALL_SUBJECTS.index)) if need_skel else {}
        errs = {name: {m: np.empty(N, np.float64) for m in modes} for name in METRICS}
        sw = {a: {name: np.empty(N) for name in METRICS} for a in sweep}
        best = np.empty((N, len(best_of)))
        pose_errs = np.empty((N, min(max(RETRIEVAL_KS), M))) if retrieval else None   # P-MPJPE of the top poses
        f_I_all = [] if retrieval else None
        keep_all = np.empty((N, N_JOINTS, 3), np.float32) if keep_mode in modes else None
        if export_k:
            out.topk = {"scores": np.empty((N, min(export_k, M)), np.float32),
                        "bank_index": np.empty((N, min(export_k, M)), np.int64)}
        keep_rows = np.asarray(keep_rows, dtype=np.int64)
        where = {int(r): i for i, r in enumerate(out.rows)}
        missing = [int(r) for r in keep_rows if int(r) not in where]
        if missing:
            raise ValueError(f"keep_rows: rows {missing[:5]} are not among the evaluated rows")
        keep_pos = np.array([where[int(r)] for r in keep_rows], dtype=np.int64)
        kept = {m: np.zeros((len(keep_rows), N_JOINTS, 3), np.float32) for m in modes}
        kept_gt = np.zeros((len(keep_rows), N_JOINTS, 3), np.float32)
        apf_targets = np.empty((N, N_JOINTS, 3), np.float32) if "apf" in modes else None
        starts = int(apf_config.starts)
        if "apf" in modes and starts > A:
            raise EvalError(f"--apf-starts {starts}: more starts than the A = {A} top poses they are taken from")
        apf_inits = (np.empty((N, N_JOINTS, 3) if starts == 1 else (N, starts, N_JOINTS, 3), np.float32)
                     if "apf" in modes else None)
        gts = np.empty((N, N_JOINTS, 3), np.float32)
        timing = {"network": 0.0, "bank": 0.0, "hml": 0.0, "ik": 0.0, "apf": 0.0, "floor": 0.0, "ranked": 0.0,
                  "retrieval": 0.0}
        top1 = set()

        part = self._images_shard(N)    # the rows this rank evaluates (all in one process)
        mine = np.asarray(idx)[part.rows]
        batches = _loader(self.dataset, self.model, mine, batch_size).epoch(0) if len(mine) else ()
        hml_loader = None
        if "hml" in modes and not _same_preprocessing(self.model, self.hml) and len(mine):
            hml_loader = _loader(self.dataset, self.hml, mine, batch_size)
        hml_batches = hml_loader.epoch(0) if hml_loader is not None else None
        bar = tqdm(total=len(mine), desc="evaluating", unit="img", disable=not (progress and self.comm.root),
                   file=sys.stderr, dynamic_ncols=True)
        start = part.lo
        for batch in batches:
            n = len(batch.index)
            sl = slice(start, start + n)
            gt = batch.poses
            gts[sl] = gt
            t = time.perf_counter()
            images = self._dev(batch.images)
            f_I, f_P = image_outputs(self.model.net, self.model.params, images)
            timing["network"] += time.perf_counter() - t
            if retrieval:
                f_I_all.append(to_host(f_I))
            t = time.perf_counter()
            preds = {}
            if use_bank:
                top_s, top_i = self._top_k(f_I, kmax, chunk)
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
                ik = np.empty((n, N_JOINTS, 3), np.float32)
                for s in np.unique(out.subjects[sl]):
                    m = out.subjects[sl] == s
                    ik[m] = skel[s].forward(skel[s].inverse(avgs[A][m]))
                preds["ik"] = ik
                timing["ik"] += time.perf_counter() - t
            if "apf" in modes:
                apf_targets[sl] = avgs[A]
                if starts == 1:
                    apf_inits[sl] = self.bank.poses[top_i[:, 0]]
                else:
                    apf_inits[sl] = choose_starts(self.bank.poses[top_i[:, :A]], avgs[A], starts)
            for m, p in preds.items():
                for name, e in frame_errors(p, gt).items():
                    errs[name][m][sl] = e
            for a in sweep:
                for name, e in frame_errors(avgs[a], gt).items():
                    sw[a][name][sl] = e
            t = time.perf_counter()
            if best_of:
                ranked = self.bank.poses[top_i[:, :ranked_k]]                      # (n, k, 17, 3)
                e = best_of_k(mpjpe(ranked, np.broadcast_to(gt[:, None], ranked.shape)), best_of)
                best[sl] = np.stack([e[k] for k in best_of], axis=1)
            if retrieval:
                pose_errs[sl] = ranked_pmpjpe(self.bank.poses, top_i[:, :pose_errs.shape[1]], gt)
            timing["ranked"] += time.perf_counter() - t
            if keep_all is not None and keep_mode in preds:
                keep_all[sl] = preds[keep_mode]
            here = np.flatnonzero((keep_pos >= start) & (keep_pos < start + n))
            kept_gt[here] = gt[keep_pos[here] - start]
            for m, p in preds.items():
                kept[m][here] = p[keep_pos[here] - start]
            start += n
            bar.update(n)
        bar.close()
        if self.comm.size > 1 and self.bank_shard is None:   # every rank's rows, in order, on every rank
            lo, hi = part.lo, part.hi
            arrays = [*(errs[name][m] for name in METRICS for m in modes if m != "apf"),
                      *(sw[a][name] for a in sweep for name in METRICS), best, gts,
                      *(x for x in (pose_errs, keep_all, apf_targets, apf_inits) if x is not None),
                      *(out.topk.values() if export_k else ())]
            for x in arrays:
                x[:] = self.comm.concat_rows(x[lo:hi])
            for x in (*kept.values(), kept_gt):   # zero outside each rank's rows
                self.comm.allreduce_sum(x.reshape(-1))
            top1 = set().union(*self.comm.allgather(top1))
            if retrieval:
                f_I_all = [self.comm.concat_rows(np.concatenate(f_I_all) if f_I_all else
                                                 np.empty((0, self.bank.emb.shape[1]), np.float32))]

        if "apf" in modes:
            t = time.perf_counter()
            apf = self._apf(out.subjects, apf_targets, apf_inits, skel, apf_config, progress)
            timing["apf"] = time.perf_counter() - t
            for name, e in frame_errors(apf, gts).items():
                errs[name]["apf"] = e
            kept["apf"] = apf[keep_pos].astype(np.float32)
            if keep_mode == "apf":
                keep_all[:] = apf
        out.mpjpe, out.pmpjpe, out.n_mpjpe, out.sweep = errs["mpjpe"], errs["pmpjpe"], errs["n_mpjpe"], sw
        out.best_of = {k: best[:, j] for j, k in enumerate(best_of)}
        out.gt = gts
        if keep_all is not None:
            out.predictions = {keep_mode: keep_all}
        if retrieval and self.comm.root:   # an all-pairs pass over the test images: rank 0's
            t = time.perf_counter()
            out.retrieval = {"threshold_mm": float(retrieval_mm), "rule": threshold_rule(retrieval_mm),
                             "ks": list(RETRIEVAL_KS),
                             "image_to_pose": image_to_pose(pose_errs, meta["camera"], M, RETRIEVAL_KS, retrieval_mm),
                             "cross_view": cross_view(np.concatenate(f_I_all), gts, meta["camera"], RETRIEVAL_KS,
                                                      retrieval_mm, batch_size, chunk)}
            timing["retrieval"] = time.perf_counter() - t
        out.kept, out.kept_gt, out.keep_rows = kept, kept_gt, keep_rows
        out.seconds = timing
        out.distinct_top1 = len(top1)
        mean_pose = self.bank.poses.mean(axis=0, dtype=np.float64)
        out.mean_pose_mpjpe = float(mpjpe(np.broadcast_to(mean_pose, gts.shape), gts).mean())
        t = time.perf_counter()
        out.bank_floor = self.bank_floor(idx)
        timing["floor"] = time.perf_counter() - t
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
        jobs = jobs[self.comm.rank::self.comm.size]    # under MPI: every rank its share of the slices
        bar = tqdm(total=sum(len(pos) for _, _, pos in jobs), desc="APF", unit="img",
                   disable=not (progress and self.comm.root), file=sys.stderr, dynamic_ncols=True)
        for s, j, pos in jobs:
            seed = int(np.random.SeedSequence([int(config.seed), h36m.ALL_SUBJECTS.index(s), j]).generate_state(1)[0])
            cfg = APFConfig(**{**asdict(config), "seed": seed})
            out[pos] = refine_poses(skel[s], targets[pos], inits[pos], cfg)
            bar.update(len(pos))
        bar.close()
        if self.comm.size > 1:
            for done in self.comm.allgather([(pos, out[pos]) for _, _, pos in jobs]):
                for pos, poses in done:
                    out[pos] = poses
        return out

    def alignment(self, max_images=2000, batch_size=256, chunk=16384, keep_embeddings=False, progress=True):
        """The training-set alignment statistic (Sec. 6): share of training images (evenly spaced,
        at most max_images) whose max-score bank pose is within 30 mm MPJPE of their ground truth.

        Returns {"share_30mm", "images", "median_mm", "mean_mm", "f_I_relative_spread"}; with
        keep_embeddings also "rows" (n,) (the images' data-file rows), "f_I" (n, D) their image
        embeddings, "f_J" (n, D) the pose embeddings of their true poses and "poses" (n, 17, 3)
        those poses (root-relative mm), all on the host (Figure 4).
        """
        rows = evenly_spaced(self.train_rows, max_images)
        part = self._images_shard(len(rows))
        mine = rows[part.rows]
        batches = _loader(self.dataset, self.model, mine, batch_size).epoch(0) if len(mine) else ()
        errs, keep = [], {"f_I": [], "f_J": [], "poses": []}
        s1 = s2 = 0.0
        bar = tqdm(total=len(mine), desc="alignment", unit="img", disable=not (progress and self.comm.root),
                   file=sys.stderr, dynamic_ncols=True)
        for batch in batches:
            f_I, _ = image_outputs(self.model.net, self.model.params, self._dev(batch.images))
            _, top = self._top_k(f_I, 1, chunk)
            errs.append(mpjpe(self.bank.poses[to_host(top)[:, 0]], batch.poses))
            f = to_host(f_I).astype(np.float64)
            s1, s2 = s1 + f.sum(axis=0), s2 + (f * f).sum(axis=0)
            if keep_embeddings:
                keep["f_I"].append(to_host(f_I))
                keep["f_J"].append(to_host(pose_embeddings(self.model.net, self.model.params,
                                                           self._dev(self.model.normalizer.normalize(batch.poses)))))
                keep["poses"].append(batch.poses)
            bar.update(len(batch.index))
        bar.close()
        if self.comm.size > 1 and self.bank_shard is None:   # every rank's rows, in order
            D = self.bank.emb.shape[1]
            sums = np.concatenate([np.broadcast_to(s1, (D,)), np.broadcast_to(s2, (D,))]).astype(np.float64)
            self.comm.allreduce_sum(sums)
            s1, s2 = sums[:D], sums[D:]
            errs = [self.comm.concat_rows(np.concatenate(errs) if errs else np.empty(0, np.float32))]
            if keep_embeddings:
                empty = {"f_I": (0, D), "f_J": (0, D), "poses": (0, N_JOINTS, 3)}
                keep = {k: [self.comm.concat_rows(np.concatenate(v) if v else np.empty(empty[k], np.float32))]
                        for k, v in keep.items()}
        e = np.concatenate(errs)
        mean = s1 / len(e)
        std = np.sqrt(np.maximum(s2 / len(e) - mean * mean, 0))
        # spread of the image embedding across images relative to its size: ~0 = collapsed
        spread = float(std.mean() / max(np.abs(mean).mean(), 1e-12)) if np.abs(mean).mean() > 0 else 0.0
        res = {"share_30mm": float((e <= ALIGN_THRESHOLD_MM).mean()), "images": int(len(e)),
               "median_mm": float(np.median(e)), "mean_mm": float(e.mean()), "f_I_relative_spread": spread}
        if keep_embeddings:
            res["rows"] = rows
            res.update({k: np.concatenate(v) for k, v in keep.items()})
        return res

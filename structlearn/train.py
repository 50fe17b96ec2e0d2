"""Training: multi-task pre-training of the convolutions ([18]) and Algorithm 1 (Sec. 4).

Both stages run through one epoch loop (Trainer._run_epochs) with a step function per mini-batch:
pretrain.PretrainStep (the multi-task cost and a momentum step) and algorithm1.Algorithm1Step (one
mini-batch of Algorithm 1). The convolutions stay fixed in Algorithm 1 (Sec. 5.3) while the data
augmentation still runs. All randomness of batch b of epoch t (its shuffle, crops, colour noise,
candidate sample and dropout masks) comes from generators seeded with (seed, stage, t, b), so a
run resumed from a checkpoint reproduces an uninterrupted one exactly.

Outputs in the run directory: config.json, log.jsonl (one line per mini-batch), checkpoint.npz
(latest, atomic), pretrain_model.npz (the DconvMP-HML network), model.npz (StructNet),
summary.json (end-of-training statistics), conv_algorithms.json (the convolution algorithms of
the run's shapes, nn.conv_tune; per-rank batch shapes, so apart from config.json, which holds
nothing N-specific).

Data-parallel (comm, an nn.comm process group of N ranks; docs/mpi.md): every rank takes a fixed
share of each global mini-batch (--batch-size stays the global size) and the steps reduce inside,
so all ranks hold the same parameters and working set. Rank 0 alone writes the run directory and
shows the progress; checkpoints hold nothing rank-specific, so a run may resume with another N.
"""
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data import h36m
from data.dataset import PoseDataset
from data.files import append_text, named_error, remove_stale_temporaries, write_text_atomic
from data.imagestats import ImageStats
from data.loader import BatchLoader
from data.synth.generator import ROOMS
from nn import backend, conv_tune, parallel
from nn.comm import Comm
from nn.optim import Adam

from .algorithm1 import Algorithm1Step
from .bank import pose_space
from .checkpoint import CheckpointError, load_training_checkpoint, save_checkpoint
from .config import DOMAINS, STAGES, TrainConfig, flag
from .cost import Objective
from .encoding import PoseNormalizer
from .linesearch import step_grid
from .model import check_shapes, load_model, save_model
from .network import POSE_EMBEDDINGS, PRESETS, MultiTaskNet, StructNet
from .pretrain import PretrainStep, detection_cells
from .search import WorkingSet

STAGE_IDS = {"pretrain": 1, "structnet": 2}
MAX_SKIPPED_IN_A_ROW = 20


class TrainingError(RuntimeError):
    """A problem the user can act on; the scripts print it as one line and exit non-zero."""


def validate_config(cfg):
    """Reject impossible settings with a message naming the flag: every numeric field against its
    domain (config.DOMAINS), the choices, and what fields must satisfy together."""
    for name, domain in DOMAINS.items():
        problem = domain.problem(getattr(cfg, name))
        if problem:
            raise TrainingError(f"{flag(name)} {problem}")
    checks = [
        (cfg.stage in STAGES, f"--stage must be one of {STAGES}, got {cfg.stage!r}"),
        (cfg.preset in PRESETS, f"--preset must be one of {sorted(PRESETS)}, got {cfg.preset!r}"),
        (cfg.device in ("cpu", "gpu"), f"--device must be cpu or gpu, got {cfg.device!r}"),
        (cfg.synth_rooms in ROOMS, f"--synth-rooms must be one of {ROOMS}, got {cfg.synth_rooms!r}"),
        (cfg.pose_embedding in POSE_EMBEDDINGS,
         f"--pose-embedding must be one of {POSE_EMBEDDINGS}, got {cfg.pose_embedding!r}"),
        (cfg.ls_min < cfg.ls_max, f"line-search grid needs --ls-min < --ls-max (got {cfg.ls_min}, {cfg.ls_max})"),
        (cfg.optimizer in ("linesearch", "adam"), f"--optimizer must be linesearch or adam, got {cfg.optimizer!r}"),
        (cfg.conv_algorithm in conv_tune.MODES,
         f"--conv-algorithm must be one of {conv_tune.MODES}, got {cfg.conv_algorithm!r}"),
    ]
    for ok, message in checks:
        if not ok:
            raise TrainingError(message)
    try:
        subjects = h36m.parse_subjects(cfg.subjects)
    except ValueError as err:
        raise TrainingError(str(err)) from None
    if not subjects:
        raise TrainingError("--subjects: no training subject given")
    for action in cfg.actions:          # known names before any data is read or generated
        try:
            h36m.canonical_action(action)
        except ValueError as err:
            raise TrainingError(f"--actions: {err}") from None


class Trainer:
    """One training run in cfg.out; call run(). comm: the nn.comm process group (None: one
    process); only its rank 0 logs and writes."""

    def __init__(self, cfg, log=print, comm=None):
        validate_config(cfg)
        self.comm = comm or Comm()
        self.cfg, self.say = cfg, (log if self.comm.root else (lambda *a, **k: None))
        self.out = Path(cfg.out)
        self.xp = backend.cupy() if cfg.device == "gpu" else np
        if cfg.device == "gpu" and self.comm.size > 1:
            backend.use_device(self.comm.local_rank)    # one GPU per rank
        self.handover = None    # the max-margin stage's first parameters, after pre-training in this process
        self.ckpt_path = self.out / "checkpoint.npz"
        self.state, self.arrays, self.ckpt_params = None, {}, None
        if cfg.resume:
            self._load_resume_state()
        elif self.ckpt_path.exists():
            raise TrainingError(f"{self.out} already holds a run; pass --resume to continue it or choose another --out")

        data_path = cfg.data
        if not data_path:   # generated once, by rank 0
            from data.synth import ensure_synthetic
            if self.comm.root:
                data_path = ensure_synthetic(scale=cfg.synth_scale, rooms=cfg.synth_rooms, progress=cfg.progress)
            data_path = self.comm.bcast(data_path)
        self.data_path = str(data_path)
        self.dataset = PoseDataset(self.data_path)
        self.subjects = h36m.parse_subjects(cfg.subjects)
        self.idx = self.dataset.select(subjects=self.subjects, actions=list(cfg.actions) or None)
        self._check_request()
        self.net_cfg = PRESETS[cfg.preset].with_(pose_embedding=cfg.pose_embedding, dropout=cfg.dropout)
        if cfg.width:
            self.net_cfg = self.net_cfg.with_(hidden=cfg.width, embed=cfg.width)
        if cfg.input_size:
            try:
                self.net_cfg = self.net_cfg.at_input_size(cfg.input_size, self.dataset.image_size)
            except ValueError as err:
                raise TrainingError(f"--input-size {cfg.input_size}: {err}") from None
        # the pose space Y of Algorithm 1: the training subjects' pose bank, root-relative, mm (the evaluator's bank)
        self.bank_mm = pose_space(self.dataset, self.subjects, list(cfg.actions) or None)[1]
        self.data_record = {"data": self.data_path, "fingerprint": self.dataset.fingerprint(),
                            "subjects": list(self.subjects), "actions": list(cfg.actions),
                            "images": int(len(self.idx)), "bank_poses": int(len(self.bank_mm))}
        if self.state is not None:
            self._check_resume_inputs()
            try:
                self.normalizer = PoseNormalizer.from_dict(self.state["normalizer"])
                self.stats = ImageStats.from_dict(self.state["image_stats"])
            except (KeyError, TypeError, ValueError) as err:
                raise CheckpointError(f"{self.ckpt_path}: unusable normaliser or image statistics ({err})") from None
        else:
            self.normalizer = PoseNormalizer.fit(self.bank_mm)
            self.stats = ImageStats.for_subjects(self.dataset, self.subjects)
        self.bank_n = self.normalizer.normalize(self.bank_mm)
        self.batches_run = 0
        self.curves = None      # --eval-every (structlearn.curves), made at the first curve point
        self.conv_algorithms = self._conv_algorithms()
        if not self.comm.root:
            return
        # Everything is checked: only now touch the run directory. A kill leaves temporaries of
        # atomic writes behind; a fresh run starts a fresh log, a resumed one keeps the lines of
        # the batches before its checkpoint.
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise named_error(err, self.out) from None
        remove_stale_temporaries(self.out)
        self._restart_log(self.state)
        write_text_atomic(self.out / "config.json", json.dumps(
            {**cfg.to_dict(), "data_resolved": self.data_path, "net": self.net_cfg.to_dict()}, indent=1))
        write_text_atomic(self.out / "conv_algorithms.json", json.dumps(self.conv_algorithms, indent=1))

    # ------------------------------------------------------------------ what the run needs
    def _check_request(self):
        """TrainingError, saying what the file holds, when a requested subject has no image of the
        requested actions or a batch is larger than the selected images."""
        meta = self.dataset.metadata(self.idx)
        counts = {s: int((meta["subject"] == s).sum()) for s in self.subjects}
        holds = ", ".join(f"{s} {n}" for s, n in counts.items())
        empty = [s for s, n in counts.items() if n == 0]
        if empty:
            actions = ", ".join(self.cfg.actions)
            have = "; ".join(f"{s} has {', '.join(self._actions_of(s)) or 'no image'}" for s in empty)
            raise TrainingError(f"{self.data_path}: no image of {', '.join(empty)} for --actions {actions} "
                                f"(images of these actions per subject: {holds}; {have})")
        stages = ("pretrain", "structnet") if self.cfg.stage == "all" else (self.cfg.stage,)
        for stage, name in (("pretrain", "pretrain_batch_size"), ("structnet", "batch_size")):
            size = getattr(self.cfg, name)
            if stage in stages and size > len(self.idx):
                raise TrainingError(f"{flag(name)} {size} is larger than the {len(self.idx)} selected training "
                                    f"images of {self.data_path} (per subject: {holds}); lower it or select more "
                                    "subjects or actions")
            if stage in stages and size < self.comm.size:
                raise TrainingError(f"{flag(name)} {size} is smaller than the {self.comm.size} MPI processes; each "
                                    "takes a share of every mini-batch: raise it or start fewer processes")

    def _actions_of(self, subject):
        held = set(self.dataset.metadata(self.dataset.select(subjects=[subject]))["action"])
        return [a for a in h36m.ACTIONS if a in held]

    # ------------------------------------------------------------------ convolution algorithms
    def _conv_algorithms(self):
        """Set nn.conv_tune's policy for this run (--conv-algorithm; a resumed run pins the choices
        its checkpoint recorded, or the fixed rule when it recorded none) and resolve the choices
        of the training shapes, once, on every rank (rank 0's win where ranks differ). Printed;
        returns the record of conv_algorithms.json."""
        cfg, mode, pinned = self.cfg, self.cfg.conv_algorithm, None
        if self.state is not None:
            pinned = self.state.get("conv_algorithms")
            if pinned is None:
                mode = "fixed"  # a checkpoint from before the choices were recorded: the fixed rule wrote it
        try:
            conv_tune.set_policy(mode, pinned)
        except ValueError as err:
            raise CheckpointError(f"{self.ckpt_path}: corrupt convolution algorithm record ({err})") from None
        entries = []
        if cfg.stage in ("pretrain", "all") and not (self.state and self.state["stage"] == "structnet"):
            n = self.comm.shard(cfg.pretrain_batch_size)
            entries += MultiTaskNet(self.net_cfg).convs.conv_passes(n.hi - n.lo)
        if cfg.stage in ("structnet", "all"):
            n = self.comm.shard(cfg.batch_size)
            entries += StructNet(self.net_cfg).convs.conv_passes(n.hi - n.lo, backward=cfg.train_convs)
        layers = conv_tune.plan(entries, self.xp)
        merged = {}
        for record in reversed(self.comm.allgather(conv_tune.record())):
            merged.update(record)
        conv_tune.set_policy(mode, merged)
        how = {"auto": f"measured on this machine, cached in {conv_tune.cache_path()}" if conv_tune.tuning_enabled()
               else f"{conv_tune.TUNE_VAR}=0: the fixed rule", "fixed": "fft for stride 1, else im2col"}.get(mode, mode)
        if self.state is not None:
            how += ("; resumed: the checkpoint's choices" if pinned is not None else
                    "; resumed from a checkpoint that records none: the fixed rule, which wrote it")
        self.say(f"convolution algorithms (--conv-algorithm {cfg.conv_algorithm}: {how}):\n"
                 + "\n".join("  " + line for line in conv_tune.describe_plan(layers)))
        return {"policy": mode, "layers": layers, "choices": merged, "machine": conv_tune.machine_key(),
                "threads": parallel.describe()}

    # ------------------------------------------------------------------ checkpoints and logs
    def _load_resume_state(self):
        if not self.ckpt_path.exists():
            raise TrainingError(f"--resume: no checkpoint in {self.out} (expected {self.ckpt_path})")
        params, state, arrays = load_training_checkpoint(self.ckpt_path)
        try:
            saved = TrainConfig.from_dict(state["config"])
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{self.ckpt_path}: corrupt configuration in the checkpoint ({err})") from None
        diffs = self.cfg.differences(saved)
        if diffs:
            listed = "; ".join(f"{k}: checkpoint {b!r}, now {a!r}" for k, a, b in diffs)
            raise TrainingError(f"--resume: {self.ckpt_path} was written with another configuration ({listed})")
        self.state, self.arrays, self.ckpt_params = state, arrays, params

    def _check_resume_inputs(self):
        """Refuse to resume on other data than the checkpoint's (named), or from parameters or a
        working set whose shapes do not fit this run."""
        saved = self.state.get("data")
        if not isinstance(saved, dict):
            self.say(f"note: {self.ckpt_path} records no data fingerprint (written by an older version); "
                     "the data file is not checked")
        else:
            now = self.data_record
            what = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, now {now[k]!r}"
                             for k in ("subjects", "actions", "images", "bank_poses") if saved.get(k) != now[k])
            if what or saved.get("fingerprint") != now["fingerprint"]:
                what = what or "its content (poses, labels or generator settings)"
                raise TrainingError(f"--resume: {self.ckpt_path} was trained on other data: {self.data_path} differs "
                                    f"in {what}; resume with the data it was trained on, or start a new run")
        stage = self.state["stage"]
        net = MultiTaskNet(self.net_cfg) if stage == "pretrain" else StructNet(self.net_cfg)
        check_shapes(self.ckpt_path, self.ckpt_params, net)
        ws = self.arrays.get("working_set")
        if ws is not None and ws.shape != (len(self.bank_mm),):
            raise CheckpointError(f"{self.ckpt_path}: its working set counts {ws.shape} poses, the pose space "
                                  f"of {self.data_path} has {len(self.bank_mm)}")

    def _restart_log(self, state):
        """Start log.jsonl afresh (state None) or keep the lines of the batches before the
        checkpoint's position (they will not run again); atomic, so a kill keeps the old log."""
        path = self.out / "log.jsonl"
        keep = []
        if state is not None and path.exists():
            position = (STAGE_IDS[state["stage"]], state["epoch"], state["batch"])
            for line in path.read_text(errors="replace").splitlines():
                try:
                    r = json.loads(line)
                    pos = (STAGE_IDS[r["stage"]], r["epoch"], r["batch"])
                except (ValueError, KeyError, TypeError):
                    continue    # a line torn by a kill
                if pos < position:
                    keep.append(line)
        elif not path.exists():
            return
        write_text_atomic(path, "".join(line + "\n" for line in keep))

    def _log(self, record):
        if self.comm.root:
            append_text(self.out / "log.jsonl", json.dumps(record) + "\n")

    def _checkpoint(self, stage, epoch, batch, params, arrays):
        if not self.comm.root:
            return
        state = {"stage": stage, "epoch": epoch, "batch": batch, "config": self.cfg.to_dict(),
                 "normalizer": self.normalizer.to_dict(), "image_stats": self.stats.to_dict(),
                 "net": self.net_cfg.to_dict(), "data": self.data_record, "conv_algorithms": conv_tune.record()}
        host = {k: backend.to_numpy(v) for k, v in params.items()}
        save_checkpoint(self.ckpt_path, host, state, {k: backend.to_numpy(v) for k, v in arrays.items()})

    def _stop_requested(self):
        self.batches_run += 1
        return self.cfg.stop_after and self.batches_run >= self.cfg.stop_after

    def _progress(self, total, initial, desc):
        return tqdm(total=total, initial=initial, desc=desc, unit="batch", dynamic_ncols=True,
                    disable=not (self.cfg.progress and self.comm.root), file=sys.stderr)

    def _loader(self, batch_size, train=True, idx=None, shard=None):
        return BatchLoader(self.dataset, self.idx if idx is None else idx, batch_size, train=train, stats=self.stats,
                           crop=self.net_cfg.input_size, downsample=self.net_cfg.downsample,
                           noise_std=self.cfg.noise_std, seed=self.cfg.seed,
                           allocate=backend.empty_pinned if self.cfg.device == "gpu" else np.empty,
                           rows=None if shard is None else (shard.lo, shard.hi))

    def _shard(self, batch_size):
        """This rank's nn.comm.Shard of every mini-batch; None in one process."""
        return self.comm.shard(batch_size) if self.comm.size > 1 else None

    def _dev(self, a):
        return self.xp.asarray(a)

    # ------------------------------------------------------------------ run
    def run(self):
        """Run the requested stages from wherever the checkpoint left off. Returns the run directory."""
        cfg = self.cfg
        stage = self.state["stage"] if self.state else ("pretrain" if cfg.stage in ("pretrain", "all") else "structnet")
        if stage == "pretrain":
            if not self.pretrain():
                return self.out
            if cfg.stage == "pretrain":
                return self.out
            self.state = None  # the structnet stage starts fresh from the pre-trained convolutions
        if cfg.stage in ("structnet", "all"):
            if not self.structnet():
                return self.out
            self.summarize()
        return self.out

    # ------------------------------------------------------------------ the epoch loop
    def _run_epochs(self, stage, n_epochs, batch_size, start, step, params, checkpoint_arrays, epoch_line, postfix):
        """The loop both stages share: mini-batches from start = (epoch, batch) to the end of n_epochs,
        each through step(epoch, b, batch, rng) -> log record, with the progress bar, the JSONL log,
        the checkpoints (every cfg.checkpoint_every batches, at each epoch end and on a stop) and the
        end-of-epoch line epoch_line(epoch, records). Returns False when stopped early (stop_after)."""
        cfg = self.cfg
        loader = self._loader(batch_size, shard=self._shard(batch_size))
        nb = loader.n_batches
        start_epoch, start_batch = start
        desc = {"pretrain": "pre-training", "structnet": "max-margin"}[stage]
        bar = self._progress(n_epochs * nb, start_epoch * nb + start_batch, desc)
        for epoch in range(start_epoch, n_epochs):
            records = []
            for b, batch in enumerate(loader.epoch(epoch, start_batch), start=start_batch):
                rng = np.random.default_rng([cfg.seed, STAGE_IDS[stage], epoch, b])
                record = step(epoch, b, batch, rng)
                records.append(record)
                self._log({"stage": stage, "epoch": epoch, "batch": b, **record})
                bar.update(1)
                bar.set_postfix(**postfix(record))
                nxt = (epoch, b + 1) if b + 1 < nb else (epoch + 1, 0)
                stop = self._stop_requested()
                if stop or (b + 1) % cfg.checkpoint_every == 0 or b + 1 == nb:
                    self._checkpoint(stage, *nxt, params, checkpoint_arrays())
                if stop:
                    bar.close()
                    return False
            if records:
                self.say(epoch_line(epoch, records))
            if stage == "structnet":
                self._curve_point(epoch + 1, params)
            start_batch = 0
        bar.close()
        return True

    def _resume_point(self, stage):
        """(epoch, batch) where the checkpoint left this stage, or None when the stage starts fresh."""
        if self.state and self.state["stage"] == stage:
            return self.state["epoch"], self.state["batch"]
        return None

    # ------------------------------------------------------------------ --eval-every: learning curves
    def _curve_point(self, epochs_done, params):
        """--eval-every: the in-memory parameters after epochs_done max-margin epochs evaluated when
        due (structlearn.curves; one record in curves.jsonl). It only reads params and draws no
        randomness, so training is the same with and without it. Rank 0 alone evaluates."""
        if not self.cfg.eval_every or not self.comm.root:
            return
        if self.curves is None:
            from .curves import LearningCurves
            self.curves = LearningCurves(self, self._resume_point("structnet"))
        self.curves.point(epochs_done, params)

    # ------------------------------------------------------------------ pre-training
    def pretrain(self):
        """Multi-task pre-training ([18]). Returns False when stopped early (stop_after)."""
        cfg, xp = self.cfg, self.xp
        net = MultiTaskNet(self.net_cfg.with_(dropout=cfg.pretrain_dropout))
        start = self._resume_point("pretrain")
        if start:
            params = self.ckpt_params.to(cfg.device)
            velocity = {k[9:]: self._dev(v) for k, v in self.arrays.items() if k.startswith("velocity/")}
        else:
            params = net.init_params(np.random.default_rng([cfg.seed, STAGE_IDS["pretrain"]])).to(cfg.device)
            velocity = {k: xp.zeros_like(v) for k, v in params.items()}
            start = (0, 0)
        pre = PretrainStep(net, velocity, cfg.detect_weight, cfg.alpha, params.weight_names, cfg.pretrain_momentum,
                           self.comm, self._shard(cfg.pretrain_batch_size))
        G, S = self.net_cfg.detect_grid, self.net_cfg.input_size

        def step(epoch, b, batch, rng):
            lr = last_quarter_rate(cfg.pretrain_lr, 0.1, epoch, cfg.pretrain_epochs)
            try:
                return pre.step(params, self._dev(batch.images), self._dev(self.normalizer.normalize(batch.poses)),
                                self._dev(detection_cells(batch.joints2d, S, G)), rng, lr)
            except FloatingPointError as err:
                raise TrainingError(f"{err} at epoch {epoch} batch {b}; lower --pretrain-lr (now {cfg.pretrain_lr})") \
                    from None

        def epoch_line(epoch, records):
            n = len(records)
            cost, regress, detect = (sum(r[k] for r in records) for k in ("cost", "regress", "detect"))
            return (f"pre-training epoch {epoch + 1}/{cfg.pretrain_epochs}: cost {cost / n:.4f} "
                    f"(regression {regress / n:.4f}, detection {detect / n:.3f}), lr {records[-1]['lr']:g}")

        done = self._run_epochs(
            "pretrain", cfg.pretrain_epochs, cfg.pretrain_batch_size, start, step, params,
            lambda: {"velocity/" + k: v for k, v in velocity.items()}, epoch_line,
            lambda r: dict(cost=f"{r['cost']:.3f}", reg=f"{r['regress']:.3f}", det=f"{r['detect']:.2f}"))
        if not done:
            return False
        host = params.to("cpu")
        if self.comm.root:
            save_model(self.out / "pretrain_model.npz", host, "multitask", net.cfg, self.normalizer, self.stats,
                       cfg, {"subjects": list(self.subjects), "data": self.data_path})
        # hand over to the max-margin stage: its checkpoint starts at epoch 0 with fresh parameters
        self.handover = self._initial_structnet_params(host)
        self._checkpoint("structnet", 0, 0, self.handover, {})
        return True

    # ------------------------------------------------------------------ Algorithm 1
    def _initial_structnet_params(self, pretrained=None):
        """Random fully connected layers; convolutions from the pre-trained network (Sec. 5.3)."""
        net = StructNet(self.net_cfg)
        params = net.init_params(np.random.default_rng([self.cfg.seed, STAGE_IDS["structnet"]]))
        if pretrained is None:
            if self.cfg.pretrained == "none":
                return params  # ablation: random convolutions
            path = Path(self.cfg.pretrained) if self.cfg.pretrained else self.out / "pretrain_model.npz"
            if not path.exists():
                raise TrainingError(f"no pre-trained network at {path}: run --stage pretrain (or all) first, "
                                    f"or pass --pretrained FILE")
            _, pretrained, meta = load_model(str(path))
            if meta["net"]["convs"] != self.net_cfg.to_dict()["convs"] or meta["net"]["input_size"] != self.net_cfg.input_size:
                raise TrainingError(f"{path} was pre-trained with another network preset")
        for k in net.conv_names:
            params[k] = pretrained[k].copy()
        return params

    def structnet(self):
        """Algorithm 1 (structlearn.algorithm1). Returns False when stopped early (stop_after)."""
        cfg = self.cfg
        net = StructNet(self.net_cfg)
        ws = WorkingSet(len(self.bank_mm))
        adam = Adam(cfg.adam_lr) if cfg.optimizer == "adam" else None
        start = self._resume_point("structnet")
        if start:
            params = self.ckpt_params.to(cfg.device)
            if "working_set" in self.arrays:
                ws.counts[:] = self.arrays["working_set"]
            if adam is not None and "adam/t" in self.arrays:
                adam.load_state({k[5:]: v for k, v in self.arrays.items() if k.startswith("adam/")}, self._dev)
        else:
            # after pre-training in this process: the parameters its hand-over checkpoint holds
            params = self.handover if self.handover is not None else self._initial_structnet_params()
            params = params.to(cfg.device)
            start = (0, 0)
        objective = Objective(cfg.lam, cfg.alpha, tuple(net.decayed(params, cfg.train_convs)))
        alg = Algorithm1Step(net, self._dev(self.bank_mm), self._dev(self.bank_n), ws, objective,
                             net.trainable(params, cfg.train_convs), step_grid(cfg.ls_min, cfg.ls_max, cfg.ls_points),
                             cfg.candidates, cfg.frequent, cfg.margin_scale, cfg.ls_reselect, cfg.train_convs,
                             optimizer=adam, comm=self.comm, shard=self._shard(cfg.batch_size))
        skipped_in_a_row = 0

        def step(epoch, b, batch, rng):
            nonlocal skipped_in_a_row
            if adam is not None:
                adam.lr = last_quarter_rate(cfg.adam_lr, cfg.adam_decay, epoch, cfg.epochs)
            record = alg.step(params, self._dev(batch.images), self._dev(batch.poses),
                              self._dev(self.normalizer.normalize(batch.poses)), rng)
            if record["step"] is not None:
                skipped_in_a_row = 0
                return record
            skipped_in_a_row += 1
            self.say(f"warning: epoch {epoch} batch {b}: no step of the line-search grid gives a finite cost; "
                     f"update skipped ({skipped_in_a_row} in a row)")
            if skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
                raise TrainingError(f"{MAX_SKIPPED_IN_A_ROW} updates in a row had no finite line-search cost; "
                                    f"the parameters or data are not finite (check the data file for NaN)")
            return record

        def epoch_line(epoch, records):
            n = len(records)
            cost, violated = (sum(r[k] for r in records) for k in ("cost", "violated"))
            after = sum(0.0 if r["cost_after"] is None else r["cost_after"] for r in records)
            after = f", cost after step {after / n:.3f}" if adam is None else ""
            return (f"max-margin epoch {epoch + 1}/{cfg.epochs}: cost {cost / n:.3f}, violated {violated / n:.2f}"
                    f"{after}, working set {len(ws)} poses")

        if start[1] == 0:
            self._curve_point(start[0], params)   # --eval-every: the start, or a point a stop at an epoch end skipped
        done = self._run_epochs(
            "structnet", cfg.epochs, cfg.batch_size, start, step, params,
            lambda: {"working_set": ws.counts, **({"adam/" + k: v for k, v in adam.state().items()} if adam else {})},
            epoch_line, lambda r: dict(cost=f"{r['cost']:.2f}", viol=f"{r['violated']:.2f}",
                                       step="skip" if r["step"] is None else f"{r['step']:.0e}"))
        if not done:
            return False
        if self.comm.root:
            save_model(self.out / "model.npz", params.to("cpu"), "structnet", self.net_cfg, self.normalizer,
                       self.stats, cfg, {"subjects": list(self.subjects), "data": self.data_path})
        return True

    # ------------------------------------------------------------------ end of training
    def summarize(self, max_images=2000):
        """Training-set alignment (Sec. 6): share of max-score poses within 30 mm of the truth
        (computed by the evaluator, which also caches the pose bank's embeddings for run_eval).
        Rank 0 alone (None on the others)."""
        if not self.comm.root:
            return None
        from .evaluate import Evaluator
        ev = Evaluator(self.out, data=self.data_path, device=self.cfg.device, log=self.say)
        res = ev.alignment(max_images=max_images, progress=self.cfg.progress)
        summary = {"train_alignment_30mm": res["share_30mm"], "images": res["images"],
                   "median_mm": res["median_mm"], "bank_poses": int(len(self.bank_mm))}
        write_text_atomic(self.out / "summary.json", json.dumps(summary, indent=1))
        self.say(f"training-set alignment: {100 * res['share_30mm']:.1f}% of {res['images']} training images have "
                 f"their max-score pose within 30 mm MPJPE of the ground truth (paper: 97%); median "
                 f"{res['median_mm']:.1f} mm")
        return summary


def last_quarter_rate(rate, factor, epoch, epochs):
    """The step schedule of both training stages: rate, times factor from epoch ceil(0.75 epochs)
    on (epochs counted from 0; pre-training's factor is 0.1, Algorithm 1's --adam-decay)."""
    return rate * (factor if epoch >= math.ceil(0.75 * epochs) else 1.0)


def train(cfg, log=print):
    return Trainer(cfg, log).run()


def default_run_dir(root="runs"):
    """A fresh run directory runs/<time stamp>; runs/latest points at it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / stamp
    i = 1
    while path.exists():
        path = Path(root) / f"{stamp}-{i}"
        i += 1
    return path


def point_latest(run_dir, root="runs"):
    link = Path(root) / "latest"
    try:
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(Path(run_dir).name, link)
    except OSError:
        pass  # a file system without symlinks: run_eval then needs --run

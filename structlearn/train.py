"""Training: multi-task pre-training of the convolutions ([18]) and Algorithm 1 (Sec. 4).

Algorithm 1, per mini-batch b of epoch t:
    Y_B = UniformSample(Y, C) + KMostFrequent(V, K)                  candidate poses
    y_hat_i = argmax_{y' in Y_B} <f_I(x_i), f_J(y')> + Delta(y_i, y')  eq. 7, one batched step
    V = V + {y_hat_i}                                               working set counts
    StepSize = LineSearch(cost, D, theta)                           grid over [1e-7, 1e2]
    theta = SGD(cost, D, theta, StepSize)                           no momentum
The convolutions stay fixed (Sec. 5.3) while the data augmentation still runs. All randomness of
batch b of epoch t (its shuffle, crops, colour noise, candidate sample and dropout masks) comes
from generators seeded with (seed, stage, t, b), so a run resumed from a checkpoint reproduces an
uninterrupted one exactly.

Outputs in the run directory: config.json, log.jsonl (one line per mini-batch), checkpoint.npz
(latest, atomic), pretrain_model.npz (the DconvMP-HML network), model.npz (StructNet),
summary.json (end-of-training statistics).
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
from data.dataset import BatchLoader, ImageStats, PoseDataset, root_relative
from nn import backend
from nn.optim import sgd_step

from .checkpoint import load_checkpoint, save_checkpoint
from .config import STAGES, TrainConfig
from .cost import StepCost, max_margin_cost, structnet_cost, structnet_cost_from_images
from .encoding import PoseNormalizer
from .linesearch import grid_line_search, step_grid
from .model import load_model, save_model
from .network import PRESETS, MultiTaskNet, StructNet
from .pretrain import detection_cells, momentum_step, multitask_cost
from .search import WorkingSet, candidate_margins, most_violated, sample_candidates

STAGE_IDS = {"pretrain": 1, "structnet": 2}
MAX_SKIPPED_IN_A_ROW = 20


class TrainingError(RuntimeError):
    """A problem the user can act on; the scripts print it as one line and exit non-zero."""


def validate_config(cfg):
    """Reject impossible settings with a message naming the flag."""
    checks = [
        (cfg.stage in STAGES, f"--stage must be one of {STAGES}, got {cfg.stage!r}"),
        (cfg.preset in PRESETS, f"--preset must be one of {sorted(PRESETS)}, got {cfg.preset!r}"),
        (cfg.device in ("cpu", "gpu"), f"--device must be cpu or gpu, got {cfg.device!r}"),
        (cfg.batch_size >= 1 and cfg.pretrain_batch_size >= 1, "batch sizes must be positive"),
        (cfg.epochs >= 0 and cfg.pretrain_epochs >= 0, "epoch counts must be >= 0"),
        (cfg.candidates >= 1, f"--candidates (C) must be >= 1, got {cfg.candidates}"),
        (cfg.frequent >= 0, f"--frequent (K) must be >= 0, got {cfg.frequent}"),
        (cfg.lam >= 0 and cfg.alpha >= 0, "--lam and --alpha must be >= 0"),
        (0 <= cfg.dropout < 1 and 0 <= cfg.pretrain_dropout < 1, "--dropout and --pretrain-dropout must be in [0, 1)"),
        (0 < cfg.ls_min < cfg.ls_max and cfg.ls_points >= 2,
         f"line-search grid needs 0 < --ls-min < --ls-max and --ls-points >= 2 (got {cfg.ls_min}, {cfg.ls_max}, {cfg.ls_points})"),
        (cfg.pretrain_lr > 0 and 0 <= cfg.pretrain_momentum < 1, "--pretrain-lr must be > 0 and --pretrain-momentum in [0, 1)"),
        (cfg.margin_scale >= 0, "--margin-scale must be >= 0"),
        (cfg.checkpoint_every >= 1, "--checkpoint-every must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise TrainingError(message)
    try:
        h36m.parse_subjects(cfg.subjects)
    except ValueError as err:
        raise TrainingError(str(err)) from None


class Trainer:
    """One training run in cfg.out; call run()."""

    def __init__(self, cfg, log=print):
        validate_config(cfg)
        self.cfg, self.say = cfg, log
        self.out = Path(cfg.out)
        self.xp = backend.cupy() if cfg.device == "gpu" else np
        self.ckpt_path = self.out / "checkpoint.npz"
        self.state, self.arrays, self.ckpt_params = None, {}, None
        if cfg.resume:
            self._load_resume_state()
        elif self.ckpt_path.exists():
            raise TrainingError(f"{self.out} already holds a run; pass --resume to continue it or choose another --out")

        data_path = cfg.data
        if not data_path:
            from data.synth import ensure_synthetic
            data_path = ensure_synthetic(scale=cfg.synth_scale, progress=cfg.progress)
        self.data_path = str(data_path)
        self.dataset = PoseDataset(self.data_path)
        self.subjects = h36m.parse_subjects(cfg.subjects)
        self.idx = self.dataset.select(subjects=self.subjects, actions=list(cfg.actions) or None)
        self.net_cfg = PRESETS[cfg.preset].with_(pose_embedding=cfg.pose_embedding, dropout=cfg.dropout)
        # the pose space Y of Algorithm 1: all training poses, root-relative, mm
        self.bank_mm = root_relative(self.dataset.poses(self.idx)).astype(np.float32)
        if self.state is not None:
            self.normalizer = PoseNormalizer.from_dict(self.state["normalizer"])
            self.stats = ImageStats.from_dict(self.state["image_stats"])
        else:
            self.normalizer = PoseNormalizer.fit(self.bank_mm)
            self.stats = ImageStats.for_subjects(self.dataset, self.subjects)
        self.bank_n = self.normalizer.normalize(self.bank_mm)
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "config.json", "w") as f:
            json.dump({**cfg.to_dict(), "data_resolved": self.data_path, "net": self.net_cfg.to_dict()}, f, indent=1)
        self.batches_run = 0

    # ------------------------------------------------------------------ checkpoints and logs
    def _load_resume_state(self):
        if not self.ckpt_path.exists():
            raise TrainingError(f"--resume: no checkpoint in {self.out} (expected {self.ckpt_path})")
        params, state, arrays = load_checkpoint(self.ckpt_path)
        saved = TrainConfig.from_dict(state["config"])
        diffs = self.cfg.differences(saved)
        if diffs:
            listed = "; ".join(f"{k}: checkpoint {b!r}, now {a!r}" for k, a, b in diffs)
            raise TrainingError(f"--resume: {self.ckpt_path} was written with another configuration ({listed})")
        self.state, self.arrays, self.ckpt_params = state, arrays, params
        self._truncate_log(STAGE_IDS[state["stage"]], state["epoch"], state["batch"])

    def _truncate_log(self, stage_id, epoch, batch):
        """Drop log lines of batches after the checkpoint (they will be run again)."""
        path = self.out / "log.jsonl"
        if not path.exists():
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
                pos = (STAGE_IDS[r["stage"]], r["epoch"], r["batch"])
            except (ValueError, KeyError):
                continue
            if pos < (stage_id, epoch, batch):
                keep.append(line)
        path.write_text("".join(line + "\n" for line in keep))

    def _log(self, record):
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _checkpoint(self, stage, epoch, batch, params, arrays):
        state = {"stage": stage, "epoch": epoch, "batch": batch, "config": self.cfg.to_dict(),
                 "normalizer": self.normalizer.to_dict(), "image_stats": self.stats.to_dict(),
                 "net": self.net_cfg.to_dict()}
        host = {k: backend.to_numpy(v) for k, v in params.items()}
        save_checkpoint(self.ckpt_path, host, state, {k: backend.to_numpy(v) for k, v in arrays.items()})

    def _stop_requested(self):
        self.batches_run += 1
        return self.cfg.stop_after and self.batches_run >= self.cfg.stop_after

    def _progress(self, total, initial, desc):
        return tqdm(total=total, initial=initial, desc=desc, unit="batch", dynamic_ncols=True,
                    disable=not self.cfg.progress, file=sys.stderr)

    def _loader(self, batch_size, train=True, idx=None):
        return BatchLoader(self.dataset, self.idx if idx is None else idx, batch_size, train=train, stats=self.stats,
                           crop=self.net_cfg.input_size, downsample=self.net_cfg.downsample,
                           noise_std=self.cfg.noise_std, seed=self.cfg.seed, pin_memory=self.cfg.device == "gpu")

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

    # ------------------------------------------------------------------ pre-training
    def pretrain(self):
        """Multi-task pre-training ([18]). Returns False when stopped early (stop_after)."""
        cfg, xp = self.cfg, self.xp
        net = MultiTaskNet(self.net_cfg.with_(dropout=cfg.pretrain_dropout))
        if self.state and self.state["stage"] == "pretrain":
            params = self.ckpt_params.to(cfg.device)
            velocity = {k[9:]: self._dev(v) for k, v in self.arrays.items() if k.startswith("velocity/")}
            start_epoch, start_batch = self.state["epoch"], self.state["batch"]
        else:
            params = net.init_params(np.random.default_rng([cfg.seed, STAGE_IDS["pretrain"]])).to(cfg.device)
            velocity = {k: xp.zeros_like(v) for k, v in params.items()}
            start_epoch, start_batch = 0, 0
        loader = self._loader(cfg.pretrain_batch_size)
        decay_names = params.weight_names
        G, S = self.net_cfg.detect_grid, self.net_cfg.input_size
        nb = loader.n_batches
        bar = self._progress(cfg.pretrain_epochs * nb, start_epoch * nb + start_batch, "pre-training")
        for epoch in range(start_epoch, cfg.pretrain_epochs):
            lr = cfg.pretrain_lr * (0.1 if epoch >= math.ceil(0.75 * cfg.pretrain_epochs) else 1.0)
            totals = np.zeros(3)
            for b, batch in enumerate(loader.epoch(epoch, start_batch), start=start_batch):
                t0 = time.perf_counter()
                rng = np.random.default_rng([cfg.seed, STAGE_IDS["pretrain"], epoch, b])
                images = self._dev(batch.images)
                y_n = self._dev(self.normalizer.normalize(batch.poses))
                cells = self._dev(detection_cells(batch.joints2d, S, G))
                masks = net.image.make_masks(rng, len(images), net.convs.d2, net.convs.d3, images.dtype, xp)
                parts, grads = multitask_cost(net, params, images, y_n, cells, masks, cfg.detect_weight,
                                              cfg.alpha, decay_names)
                if not math.isfinite(parts.total):
                    raise TrainingError(f"pre-training cost became {parts.total} at epoch {epoch} batch {b}; "
                                        f"lower --pretrain-lr (now {cfg.pretrain_lr})")
                momentum_step(params, grads, velocity, lr, cfg.pretrain_momentum)
                totals += (parts.total, parts.aux, parts.detect)
                self._log({"stage": "pretrain", "epoch": epoch, "batch": b, "cost": parts.total,
                           "regress": parts.aux, "detect": parts.detect, "decay": parts.decay, "lr": lr,
                           "seconds": round(time.perf_counter() - t0, 4)})
                bar.update(1)
                bar.set_postfix(cost=f"{parts.total:.3f}", reg=f"{parts.aux:.3f}", det=f"{parts.detect:.2f}")
                nxt = (epoch, b + 1) if b + 1 < nb else (epoch + 1, 0)
                stop = self._stop_requested()
                if stop or (b + 1) % cfg.checkpoint_every == 0 or b + 1 == nb:
                    arrays = {"velocity/" + k: v for k, v in velocity.items()}
                    self._checkpoint("pretrain", *nxt, params, arrays)
                if stop:
                    bar.close()
                    return False
            n = nb - start_batch
            if n > 0:
                self.say(f"pre-training epoch {epoch + 1}/{cfg.pretrain_epochs}: cost {totals[0] / n:.4f} "
                         f"(regression {totals[1] / n:.4f}, detection {totals[2] / n:.3f}), lr {lr:g}")
            start_batch = 0
        bar.close()
        host = params.to("cpu")
        save_model(self.out / "pretrain_model.npz", host, "multitask", net.cfg, self.normalizer, self.stats,
                   cfg, {"subjects": list(self.subjects), "data": self.data_path})
        # hand over to the max-margin stage: its checkpoint starts at epoch 0 with fresh parameters
        self._checkpoint("structnet", 0, 0, self._initial_structnet_params(host), {})
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
        """Algorithm 1. Returns False when stopped early (stop_after)."""
        cfg, xp = self.cfg, self.xp
        net = StructNet(self.net_cfg)
        ws = WorkingSet(len(self.bank_mm))
        if self.state and self.state["stage"] == "structnet":
            params = self.ckpt_params.to(cfg.device)
            if "working_set" in self.arrays:
                ws.counts[:] = self.arrays["working_set"]
            start_epoch, start_batch = self.state["epoch"], self.state["batch"]
        else:
            ck = self.ckpt_path.exists() and load_checkpoint(self.ckpt_path)
            if ck and ck[1]["stage"] == "structnet" and ck[1]["epoch"] == 0 and ck[1]["batch"] == 0:
                params = ck[0]
            else:
                params = self._initial_structnet_params()
            params = params.to(cfg.device)
            start_epoch, start_batch = 0, 0
        loader = self._loader(cfg.batch_size)
        bank_mm, bank_n = self._dev(self.bank_mm), self._dev(self.bank_n)
        steps = step_grid(cfg.ls_min, cfg.ls_max, cfg.ls_points)
        trainable = net.trainable(params, cfg.train_convs)
        decay_names = net.decayed(params, cfg.train_convs)
        nb, skipped_in_a_row = loader.n_batches, 0
        bar = self._progress(cfg.epochs * nb, start_epoch * nb + start_batch, "max-margin")
        for epoch in range(start_epoch, cfg.epochs):
            totals, count = np.zeros(3), 0
            for b, batch in enumerate(loader.epoch(epoch, start_batch), start=start_batch):
                t0 = time.perf_counter()
                rng = np.random.default_rng([cfg.seed, STAGE_IDS["structnet"], epoch, b])
                cand = sample_candidates(rng, len(self.bank_mm), cfg.candidates, ws.most_frequent(cfg.frequent))
                images, y_mm = self._dev(batch.images), self._dev(batch.poses)
                y_n, cand_n = self._dev(self.normalizer.normalize(batch.poses)), bank_n[cand]
                cand_mm = bank_mm[cand]
                # the (B, C) margins are kept only when the line search re-selects y_hat with them
                margins = candidate_margins(y_mm, cand_mm, cfg.margin_scale).astype(y_n.dtype) if cfg.ls_reselect else None
                (f2, f3), _ = net.convs.forward(params, images)
                masks = net.image.make_masks(rng, len(images), net.convs.d2, net.convs.d3, images.dtype, xp)

                # stage 1: the most-violated pose of each example among the candidates (eq. 7)
                f_I, _, _ = net.image.forward(params, f2, f3, masks)
                v, delta, _ = most_violated(f_I, net.pose.forward(params, cand_n)[0], margins, y_mm, cand_mm,
                                            cfg.margin_scale)
                chosen = cand[backend.to_numpy(v)]
                ws.add(chosen)
                yhat_n = bank_n[chosen]
                t1 = time.perf_counter()

                # stage 2: gradient on the extended data D = {(x, y, y_hat)}, line search, SGD step
                if cfg.train_convs:
                    parts, grads = structnet_cost_from_images(net, params, images, y_n, yhat_n, delta, masks,
                                                              cfg.lam, cfg.alpha, decay_names)
                else:
                    parts, grads, _ = structnet_cost(net, params, f2, f3, y_n, yhat_n, delta, masks, cfg.lam,
                                                     cfg.alpha, decay_names)
                grads = {k: grads[k] for k in trainable if k in grads}  # lambda = 0: no gradient for b7
                t2 = time.perf_counter()

                if cfg.train_convs:  # the features move with the step: run the whole network per trial
                    def trial_cost(step):
                        p = params.moved(grads, -step)
                        g2, g3 = net.convs.forward(p, images)[0]
                        if cfg.ls_reselect:  # eq. 12 at theta - step * g, y_hat re-selected among the candidates
                            return max_margin_cost(net, p, g2, g3, y_n, cand_n, margins, masks, cfg.lam, cfg.alpha,
                                                   decay_names).total
                        return structnet_cost(net, p, g2, g3, y_n, yhat_n, delta, masks, cfg.lam, cfg.alpha,
                                              decay_names, need_grads=False)[0].total
                else:
                    trial_cost = StepCost(net, params, grads, f2, f3, y_n, cand_n if cfg.ls_reselect else yhat_n,
                                          margins if cfg.ls_reselect else delta, masks, cfg.lam, cfg.alpha,
                                          decay_names, reselect=cfg.ls_reselect)

                step, costs = grid_line_search(trial_cost, steps)
                after = None if step is None else min(c for c in costs if math.isfinite(c))
                t3 = time.perf_counter()
                if step is None:
                    skipped_in_a_row += 1
                    self.say(f"warning: epoch {epoch} batch {b}: no step of the line-search grid gives a finite cost; "
                             f"update skipped ({skipped_in_a_row} in a row)")
                    if skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
                        raise TrainingError(f"{MAX_SKIPPED_IN_A_ROW} updates in a row had no finite line-search cost; "
                                            f"the parameters or data are not finite (check the data file for NaN)")
                else:
                    skipped_in_a_row = 0
                    sgd_step(params, grads, step)
                totals += (parts.total, parts.violated, 0.0 if after is None else after)
                count += 1
                self._log({"stage": "structnet", "epoch": epoch, "batch": b, "cost": parts.total,
                           "hinge": parts.hinge, "aux": parts.aux, "decay": parts.decay, "violated": parts.violated,
                           "step": step, "cost_after": after,
                           "working_set": len(ws), "seconds": round(time.perf_counter() - t0, 4),
                           "seconds_search": round(t1 - t0, 4), "seconds_grad": round(t2 - t1, 4),
                           "seconds_line_search": round(t3 - t2, 4)})
                bar.update(1)
                bar.set_postfix(cost=f"{parts.total:.2f}", viol=f"{parts.violated:.2f}",
                                step="skip" if step is None else f"{step:.0e}")
                nxt = (epoch, b + 1) if b + 1 < nb else (epoch + 1, 0)
                stop = self._stop_requested()
                if stop or (b + 1) % cfg.checkpoint_every == 0 or b + 1 == nb:
                    self._checkpoint("structnet", *nxt, params, {"working_set": ws.counts})
                if stop:
                    bar.close()
                    return False
            if count:
                self.say(f"max-margin epoch {epoch + 1}/{cfg.epochs}: cost {totals[0] / count:.3f}, "
                         f"violated {totals[1] / count:.2f}, cost after step {totals[2] / count:.3f}, "
                         f"working set {len(ws)} poses")
            start_batch = 0
        bar.close()
        save_model(self.out / "model.npz", params.to("cpu"), "structnet", self.net_cfg, self.normalizer,
                   self.stats, cfg, {"subjects": list(self.subjects), "data": self.data_path})
        return True

    # ------------------------------------------------------------------ end of training
    def summarize(self, max_images=2000):
        """Training-set alignment (Sec. 6): share of max-score poses within 30 mm of the truth
        (computed by the evaluator, which also caches the pose bank's embeddings for run_eval)."""
        from .evaluate import Evaluator
        ev = Evaluator(self.out, data=self.data_path, device=self.cfg.device, log=self.say)
        res = ev.alignment(max_images=max_images, progress=self.cfg.progress)
        summary = {"train_alignment_30mm": res["share_30mm"], "images": res["images"],
                   "median_mm": res["median_mm"], "bank_poses": int(len(self.bank_mm))}
        with open(self.out / "summary.json", "w") as f:
            json.dump(summary, f, indent=1)
        self.say(f"training-set alignment: {100 * res['share_30mm']:.1f}% of {res['images']} training images have "
                 f"their max-score pose within 30 mm MPJPE of the ground truth (paper: 97%); median "
                 f"{res['median_mm']:.1f} mm")
        return summary


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

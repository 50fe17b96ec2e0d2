"""One mini-batch of Algorithm 1 (Sec. 4), as a unit: the trainer loops over it, the benchmark
times its stages, and a data-parallel version reduces inside it.

    Y_B = UniformSample(Y, C) + KMostFrequent(V, K)                  candidate poses
    y_hat_i = argmax_{y' in Y_B} <f_I(x_i), f_J(y')> + Delta(y_i, y')  eq. 7, one batched step
    V = V + {y_hat_i}                                               working set counts
    StepSize = LineSearch(cost, D, theta)                           grid over [1e-7, 1e2]
    theta = SGD(cost, D, theta, StepSize)                           no momentum

The batch's random draws come from the generator it is given, in a fixed order: the candidate
sample, then the dropout masks.

Data-parallel (nn.comm, docs/mpi.md): each rank holds the rows shard.rows of the global batch,
draws the whole batch's candidates and masks and keeps its rows, and finds its rows' most-violated
poses; one reduction merges their working-set increments, one the gradients (each rank's mean
weighted by its share of the batch) and one the line search's per-step costs, so every rank takes
the step a single process takes.
"""
import math
import time
from dataclasses import dataclass

import numpy as np

from nn import backend
from nn.comm import Comm
from nn.optim import sgd_step

from .cost import CostParts, StepCost, Violators, structnet_cost, structnet_cost_from_images
from .linesearch import grid_line_search
from .search import candidate_margins, most_violated, sample_candidates


@dataclass
class ExtendedBatch:
    """A mini-batch after stage 1: the extended data D = {(x_i, y_i, yhat_i)} and what the line
    search needs. Arrays are on the training device; cand and chosen index the pose space."""
    images: object          # (B, 3, S, S)
    f2: object              # (B, d2) conv features (fixed when the convolutions are)
    f3: object              # (B, d3)
    y_n: object             # (B, 51) normalised ground truth
    masks: dict             # dropout masks, drawn once for the batch
    cand: np.ndarray        # (C',) candidate indices, sorted (host)
    cand_n: object          # (C', 51) normalised candidates
    margins: object         # (B, C') Delta(y_i, y_c), or None when the line search keeps D fixed
    chosen: np.ndarray      # (B,) pose-space index of yhat_i (host)
    yhat_n: object          # (B, 51)
    delta: object           # (B,) Delta(y_i, yhat_i)


class Algorithm1Step:
    """Algorithm 1 on one mini-batch: step(params, images, y_mm, y_n, rng) updates params and the
    working set in place and returns the batch's log record.

    net: StructNet; bank_mm (N, 17, 3) root-relative poses in mm and bank_n (N, 51) their
    normalised form (the pose space Y, on the device); working_set: search.WorkingSet over Y;
    objective: cost.Objective; trainable: the names SGD updates; steps: the line-search grid;
    reselect: re-select y_hat among the candidates at every trial step (the default), or keep D
    fixed (the literal reading); train_convs: also train the convolutions (the paper fixes them);
    optimizer: None for the paper's line search + SGD step, or an object with step(params, grads)
    and lr (nn.optim.Adam) that replaces both (a measured alternative, not the paper's rule).
    comm, shard: the process group (nn.comm) and this rank's nn.comm.Shard of every batch (the
    images given to step are its rows); None: one process, the whole batch.
    """

    def __init__(self, net, bank_mm, bank_n, working_set, objective, trainable, steps, candidates, frequent,
                 margin_scale, reselect=True, train_convs=False, optimizer=None, comm=None, shard=None):
        self.net, self.bank_mm, self.bank_n, self.ws = net, bank_mm, bank_n, working_set
        self.objective, self.trainable, self.steps = objective, list(trainable), steps
        self.candidates, self.frequent, self.margin_scale = candidates, frequent, margin_scale
        self.reselect, self.train_convs, self.optimizer = reselect, train_convs, optimizer
        self.comm = comm or Comm()
        self.shard = shard if self.comm.size > 1 else None

    def search(self, params, images, y_mm, y_n, rng):
        """Stage 1: sample the candidates, find the most-violated pose of each example (eq. 7) and
        count it in the working set. Returns an ExtendedBatch."""
        net = self.net
        xp = backend.get_array_module(images)
        cand = sample_candidates(rng, len(self.bank_mm), self.candidates, self.ws.most_frequent(self.frequent))
        cand_n, cand_mm = self.bank_n[cand], self.bank_mm[cand]
        # the (B, C) margins are kept only when the line search re-selects y_hat with them
        margins = candidate_margins(y_mm, cand_mm, self.margin_scale).astype(y_n.dtype) if self.reselect else None
        f2, f3 = net.convs.features(params, images)
        sh = self.shard
        masks = net.image.make_masks(rng, sh.total if sh else len(images), net.convs.d2, net.convs.d3, images.dtype,
                                     xp, rows=sh.rows if sh else None)
        f_I, _, _ = net.image.forward(params, f2, f3, masks)
        v, delta, _ = most_violated(f_I, net.pose.forward(params, cand_n)[0], margins, y_mm, cand_mm,
                                    self.margin_scale)
        chosen = cand[backend.to_numpy(v)]
        self.ws.add(self.comm.gather_rows(chosen, sh) if sh else chosen)   # V: every rank's increments
        return ExtendedBatch(images, f2, f3, y_n, masks, cand, cand_n, margins, chosen, self.bank_n[chosen], delta)

    def gradient(self, params, d):
        """Stage 2: the cost of eq. 12 on D and its gradient for the trained names.
        Returns (CostParts, grads)."""
        fixed = Violators.fixed(d.yhat_n, d.delta)
        if self.train_convs:
            parts, grads = structnet_cost_from_images(self.net, params, d.images, d.y_n, fixed, d.masks,
                                                      self.objective)
        else:
            parts, grads, _ = structnet_cost(self.net, params, d.f2, d.f3, d.y_n, fixed, d.masks, self.objective)
        grads = {k: grads[k] for k in self.trainable if k in grads}  # lambda = 0: no gradient for b7
        if self.shard is None:
            return parts, grads
        # the batch's cost and gradient: the ranks' means weighted by their shares, in one reduction
        sh = self.shard
        grads, (hinge, aux, violated) = self.comm.reduce_batch(
            grads, [sh.weight * parts.hinge, sh.weight * parts.aux, round(parts.violated * (sh.hi - sh.lo))],
            sh.weight)
        return CostParts(hinge + aux + parts.decay, hinge, aux, parts.decay, violated / sh.total), grads

    def line_search(self, params, grads, d):
        """The step of least cost along -grads over the grid. Returns (step or None, costs)."""
        violators = Violators.among(d.cand_n, d.margins) if self.reselect else Violators.fixed(d.yhat_n, d.delta)
        cost_at = StepCost(self.net, params, grads, d.f2, d.f3, d.y_n, violators, d.masks, self.objective,
                           images=d.images if self.train_convs else None)
        if self.shard is None:
            return grid_line_search(cost_at, self.steps)
        # every rank's cost of its rows at every step, weighted and summed: the batch's costs
        return grid_line_search(cost_at, self.steps, lambda costs: self.comm.sum_floats(costs, self.shard.weight))

    def step(self, params, images, y_mm, y_n, rng):
        """The whole mini-batch. The record's step is None when no grid step gave a finite cost
        (the update is then skipped); with an optimizer it is the optimizer's rate, and cost_after
        is None."""
        t0 = time.perf_counter()
        d = self.search(params, images, y_mm, y_n, rng)
        t1 = time.perf_counter()
        parts, grads = self.gradient(params, d)
        t2 = time.perf_counter()
        if self.optimizer is not None:
            self.optimizer.step(params, grads)
            step, after = self.optimizer.lr, None
        else:
            step, costs = self.line_search(params, grads, d)
            after = None if step is None else min(c for c in costs if math.isfinite(c))
            if step is not None:
                sgd_step(params, grads, step)
        t3 = time.perf_counter()
        return {"cost": parts.total, "hinge": parts.hinge, "aux": parts.aux, "decay": parts.decay,
                "violated": parts.violated, "step": step, "cost_after": after, "working_set": len(self.ws),
                "seconds": round(t3 - t0, 4), "seconds_search": round(t1 - t0, 4),
                "seconds_grad": round(t2 - t1, 4), "seconds_line_search": round(t3 - t2, 4)}

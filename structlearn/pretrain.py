"""Multi-task pre-training of the convolutions (reference [18], seed 001: DconvMP-HML).

The network (MultiTaskNet) shares StructNet's conv stack and image trunk h1-h3 and puts two
heads on h3:
  * 3D pose regression f_P = tanh(W7^T h3 + b7), cost ||f_P - y_n||^2 (eq. 11's form);
  * joint detection: for each joint j, a softmax over the grid x grid cells of the input crop,
    cost the cross-entropy of the cell that holds the joint's 2-D projection (joints outside the
    crop are ignored). This is the "body-part detection" task of [18]/[19] in its simplest form:
    classifying, for each joint, which window of a coarse grid contains it.
    cost = 1/B sum_i [ ||f_P(x_i) - y_i||^2 + detect_weight * sum_j CE_ij ] + alpha sum ||W||^2
The regression head alone is the DconvMP-HML baseline of Table 1.
"""
import math
import time

import numpy as np

from data.h36m import N_JOINTS
from nn import backend
from nn.comm import Comm
from nn.optim import add_grads, weight_decay

from .cost import CostParts


def detection_cells(joints2d, crop, grid):
    """(B, 17, 2) pixel positions (x, y) in the crop -> (B, 17) cell index in [0, grid^2) or -1."""
    x, y = joints2d[..., 0], joints2d[..., 1]
    inside = (x >= 0) & (x < crop) & (y >= 0) & (y < crop)
    cx = np.clip((x * grid / crop).astype(np.int64), 0, grid - 1)
    cy = np.clip((y * grid / crop).astype(np.int64), 0, grid - 1)
    return np.where(inside, cy * grid + cx, -1)


def multitask_cost(net, params, images, y_n, cells, masks, detect_weight, alpha, decay_names, need_grads=True):
    """Pre-training cost on a batch and its gradients for every parameter.

    images (B, 3, S, S); y_n (B, 51) normalised poses; cells (B, 17) detection targets (-1: none).
    Returns (CostParts with hinge = 0 and aux = the regression term, grads or None).
    """
    xp = backend.get_array_module(images)
    B = images.shape[0]
    G2 = net.cfg.detect_grid ** 2
    (f2, f3), c_conv = net.convs.forward(params, images)
    h3, c_trunk = net.image.trunk(params, f2, f3, masks)
    p, c_g7 = net.image.g7.forward(params, h3)
    f_P, c_tanh = net.image.tanh.forward(params, p)
    logits, c_det = net.detect.forward(params, h3)
    z = logits.reshape(B, N_JOINTS, G2)
    z = z - z.max(axis=2, keepdims=True)
    log_prob = z - xp.log(xp.exp(z).sum(axis=2, keepdims=True))
    valid = cells >= 0
    safe = xp.where(valid, cells, 0)
    picked = xp.take_along_axis(log_prob, safe[..., None], axis=2)[..., 0]
    detect = float(-(picked * valid).sum() / B)
    diff = f_P - y_n
    regress = float((diff * diff).sum() / B)
    decay, g_decay = weight_decay(params, alpha, decay_names)
    parts = CostParts(regress + detect_weight * detect + decay, 0.0, regress, decay, 0.0, detect)
    if not need_grads:
        return parts, None

    g_z = xp.exp(log_prob)                                  # softmax - one-hot, on valid joints
    xp.put_along_axis(g_z, safe[..., None], xp.take_along_axis(g_z, safe[..., None], axis=2) - 1, axis=2)
    g_z *= (valid * (detect_weight / B))[..., None].astype(g_z.dtype)
    g_h3, grads = net.detect.backward(params, c_det, g_z.reshape(B, N_JOINTS * G2))
    g, _ = net.image.tanh.backward(params, c_tanh, (2.0 / B) * diff)
    g, gp = net.image.g7.backward(params, c_g7, g)
    add_grads(grads, gp)
    g2, g3, gp = net.image.trunk_backward(params, c_trunk, g_h3 + g)
    add_grads(grads, gp)
    add_grads(grads, net.convs.backward(params, c_conv, g2, g3))
    add_grads(grads, g_decay)
    return parts, grads


class PretrainStep:
    """One mini-batch of the pre-training: the multi-task cost, then a momentum step.
    step(params, images, y_n, cells, rng, lr) updates params and velocity in place and returns the
    batch's log record; it raises FloatingPointError, before any update, when the cost is not finite.
    comm, shard (data-parallel, nn.comm): the images are this rank's rows shard.rows of the batch;
    the batch's masks are drawn and sliced, and one reduction sums the weighted gradients."""

    def __init__(self, net, velocity, detect_weight, alpha, decay_names, momentum, comm=None, shard=None):
        self.net, self.velocity, self.momentum = net, velocity, momentum
        self.detect_weight, self.alpha, self.decay_names = detect_weight, alpha, decay_names
        self.comm = comm or Comm()
        self.shard = shard if self.comm.size > 1 else None

    def step(self, params, images, y_n, cells, rng, lr):
        t0 = time.perf_counter()
        net = self.net
        xp = backend.get_array_module(images)
        sh = self.shard
        masks = net.image.make_masks(rng, sh.total if sh else len(images), net.convs.d2, net.convs.d3, images.dtype,
                                     xp, rows=sh.rows if sh else None)
        parts, grads = multitask_cost(net, params, images, y_n, cells, masks, self.detect_weight, self.alpha,
                                      self.decay_names)
        if sh is not None:   # the batch's cost and gradient: the ranks' weighted means, one reduction
            grads, (regress, detect) = self.comm.reduce_batch(grads, [sh.weight * parts.aux, sh.weight * parts.detect],
                                                              sh.weight)
            parts = CostParts(regress + self.detect_weight * detect + parts.decay, 0.0, regress, parts.decay, 0.0,
                              detect)
        if not math.isfinite(parts.total):
            raise FloatingPointError(f"pre-training cost became {parts.total}")
        momentum_step(params, grads, self.velocity, lr, self.momentum)
        return {"cost": parts.total, "regress": parts.aux, "detect": parts.detect, "decay": parts.decay, "lr": lr,
                "seconds": round(time.perf_counter() - t0, 4)}


def momentum_step(params, grads, velocity, lr, momentum):
    """v <- momentum * v - lr * g; p <- p + v (the pre-training optimiser; Algorithm 1 uses none)."""
    for k, g in grads.items():
        v = velocity[k]
        v *= momentum
        v -= lr * g
        params[k] += v

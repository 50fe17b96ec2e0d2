"""The max-margin cost of a mini-batch of extended data (x, y, y_hat) (eqs. 6, 11, 12).

    cost = 1/B sum_i max(0, f_S(x_i, yhat_i) + Delta(yhat_i, y_i) - f_S(x_i, y_i))      (eq. 6)
         + lambda/B sum_i ||f_P(x_i) - y_i||^2                                          (eq. 11)
         + alpha sum_j ||W_j||_F^2                                                      (eq. 12)

Delta is the MPJPE between the root-relative poses in mm (eq. 8), times `margin_scale`. The
ground truth and the most-violated pose go through the same pose network in one call (shared
weights, gradients summed). The auxiliary gradient reaches h3 and below only (g7, h3, h1, h2 and,
when trained, the convolutions), as the paper notes.
"""
from dataclasses import dataclass

from nn import backend
from nn.optim import add_grads, weight_decay


@dataclass
class CostParts:
    total: float
    hinge: float          # mean of eq. 6 over the batch
    aux: float            # lambda * mean of eq. 11
    decay: float          # alpha * sum ||W||^2
    violated: float       # share of examples with an active (positive) hinge
    detect: float = 0.0   # pre-training only: mean joint-detection cross-entropy


def structnet_cost(net, params, f2, f3, y_n, yhat_n, delta, masks, lam, alpha, decay_names,
                   need_grads=True, need_features=False):
    """Cost of eq. 12 on a batch, and its gradients.

    f2, f3: conv features (B, d2), (B, d3); y_n, yhat_n: normalised poses (B, 51) of the ground
    truth and the most-violated pose; delta: (B,) margins; masks: dropout masks or None.
    Returns (CostParts, grads {name: array} or None, (g_f2, g_f3) or None).
    """
    xp = backend.get_array_module(f2)
    B = y_n.shape[0]
    if yhat_n.shape != y_n.shape or delta.shape != (B,) or f2.shape[0] != B or f3.shape[0] != B:
        raise ValueError(f"structnet_cost: batch shapes disagree: f2 {tuple(f2.shape)}, f3 {tuple(f3.shape)}, "
                         f"y {tuple(y_n.shape)}, y_hat {tuple(yhat_n.shape)}, delta {tuple(delta.shape)}")
    f_I, f_P, c_img = net.image.forward(params, f2, f3, masks)
    f_J, c_pose = net.pose.forward(params, xp.concatenate([y_n, yhat_n]))
    fJ_y, fJ_hat = f_J[:B], f_J[B:]
    s_y = (f_I * fJ_y).sum(axis=1)
    s_hat = (f_I * fJ_hat).sum(axis=1)
    hinge = xp.maximum(0, s_hat + delta - s_y)
    diff = f_P - y_n
    decay, g_decay = weight_decay(params, alpha, decay_names)
    hinge_mean = float(hinge.mean())
    aux = float(lam * (diff * diff).sum() / B)
    parts = CostParts(hinge_mean + aux + decay, hinge_mean, aux, decay, float((hinge > 0).mean()))
    if not need_grads:
        return parts, None, None

    a = ((hinge > 0) / B).astype(f_I.dtype)[:, None]      # d cost / d hinge_i where active
    g_I = a * (fJ_hat - fJ_y)
    g_J = xp.concatenate([-a * f_I, a * f_I])
    g_P = (2.0 * lam / B) * diff if lam else None
    grads = net.pose.backward(params, c_pose, g_J)
    g2, g3, g_img = net.image.backward(params, c_img, g_I, g_P, need_features=need_features)
    add_grads(grads, g_img)
    add_grads(grads, g_decay)
    return parts, grads, ((g2, g3) if need_features else None)


def structnet_cost_from_images(net, params, images, y_n, yhat_n, delta, masks, lam, alpha, decay_names,
                               need_grads=True):
    """structnet_cost through the conv stack too (gradients for the convolutions as well), for
    fine-tuning the convolutions and for the full-graph gradient test."""
    (f2, f3), c_conv = net.convs.forward(params, images)
    parts, grads, g_feat = structnet_cost(net, params, f2, f3, y_n, yhat_n, delta, masks, lam, alpha,
                                          decay_names, need_grads=need_grads, need_features=need_grads)
    if need_grads:
        add_grads(grads, net.convs.backward(params, c_conv, *g_feat))
    return parts, grads


def max_margin_cost(net, params, f2, f3, y_n, cand_n, margins, masks, lam, alpha, decay_names):
    """The cost of eq. 12 with y_hat re-selected among the candidates at `params` (no gradients).

    eq. 12's cost depends on theta through y_hat(x, y, theta) (eq. 7 and footnote 1); this
    evaluates it over the candidate set of the mini-batch in one pass:
        hinge_i = max(0, max_c [<f_I(x_i), f_J(y_c)> + Delta_ic] - <f_I(x_i), f_J(y_i)>)
    cand_n (C, 51) normalised candidates; margins (B, C) = Delta(y_i, y_c), fixed for the batch.
    Equals structnet_cost(...).total with y_hat the argmax of eq. 7 (tested).
    """
    xp = backend.get_array_module(f2)
    B = y_n.shape[0]
    f_I, f_P, _ = net.image.forward(params, f2, f3, masks)
    f_J, _ = net.pose.forward(params, xp.concatenate([y_n, cand_n]))
    s_y = (f_I * f_J[:B]).sum(axis=1)
    best = (f_I @ f_J[B:].T + margins).max(axis=1)
    hinge = xp.maximum(0, best - s_y)
    diff = f_P - y_n
    decay, _ = weight_decay(params, alpha, decay_names, need_grads=False)
    hinge_mean = float(hinge.mean())
    aux = float(lam * (diff * diff).sum() / B)
    return CostParts(hinge_mean + aux + decay, hinge_mean, aux, decay, float((hinge > 0).mean()))

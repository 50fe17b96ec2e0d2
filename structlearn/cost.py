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


class StepCost:
    """cost(theta - s * g) of the line search, for many steps s, exactly and without re-running
    the layers whose input does not change with s (Sec. 4's line search is the hot path of stage 2).

    h1 and h2 see the (frozen, masked) conv features and h5 sees the poses, all fixed, so their
    pre-activations are affine in s: z(s) = (x W + b) - s (x gW + gb), computed once. The weight
    decay is quadratic in s: alpha ||W - s gW||^2 = alpha (W.W - 2 s W.gW + s^2 gW.gW). The other
    layers (h3, h4, g7, h6) are evaluated at theta - s g as usual.

    reselect=True: the cost of eq. 12 with y_hat re-selected among the candidates cand_n (C, 51)
    with margins (B, C) (as max_margin_cost); reselect=False: the cost of the fixed extended data,
    cand_n = y_hat (B, 51) and margins = Delta (B,) (as structnet_cost). Tested equal to both.
    """

    def __init__(self, net, params, grads, f2, f3, y_n, cand_n, margins, masks, lam, alpha, decay_names,
                 reselect=True):
        xp = backend.get_array_module(f2)
        self.net, self.params, self.grads = net, params, grads
        self.y_n, self.margins, self.lam, self.reselect = y_n, margins, lam, reselect
        img = net.image
        a = f2 if masks is None else f2 * masks["drop1"]
        b = f3 if masks is None else f3 * masks["drop2"]
        self.z1 = self._affine(img.h1, a)
        self.z2 = self._affine(img.h2, b)
        poses = xp.concatenate([y_n, cand_n])
        self.pose_first = net.pose.layers[0] if net.pose.layers else None
        self.poses = poses
        self.z5 = self._affine(self.pose_first, poses) if self.pose_first else None
        self.decay = []
        for k in decay_names:
            W, g = params[k], grads.get(k)
            self.decay.append((float(xp.vdot(W, W)), float(xp.vdot(W, g)) if g is not None else 0.0,
                               float(xp.vdot(g, g)) if g is not None else 0.0))
        self.alpha = alpha
        self.xp = xp

    def _affine(self, layer, x):
        """(z0, dz) with z(s) = z0 - s dz for the layer's pre-activation on fixed input x."""
        W, b = self.params[layer.W], self.params[layer.b]
        z0 = x @ W + b
        gW, gb = self.grads.get(layer.W), self.grads.get(layer.b)
        if gW is None and gb is None:
            return z0, None
        dz = 0
        if gW is not None:
            dz = x @ gW
        if gb is not None:
            dz = dz + gb
        return z0, dz

    @staticmethod
    def _at(z, s):
        z0, dz = z
        return z0 if dz is None else z0 - s * dz

    def _layer(self, layer, x, s):
        W, b = self.params[layer.W], self.params[layer.b]
        gW, gb = self.grads.get(layer.W), self.grads.get(layer.b)
        if gW is not None:
            W = W - s * gW
        if gb is not None:
            b = b - s * gb
        return x @ W + b

    def __call__(self, s):
        xp, net, B = self.xp, self.net, self.y_n.shape[0]
        img, relu = net.image, lambda v: xp.maximum(v, 0)
        h = xp.concatenate([relu(self._at(self.z1, s)), relu(self._at(self.z2, s))], axis=1)
        h3 = relu(self._layer(img.h3, h, s))
        f_I = relu(self._layer(img.h4, h3, s))
        f_P = xp.tanh(self._layer(img.g7, h3, s))
        if self.pose_first is None:                       # raw pose: f_J(y) = y
            f_J = self.poses
        else:
            f_J = relu(self._at(self.z5, s))
            for layer in net.pose.layers[1:]:
                f_J = relu(self._layer(layer, f_J, s))
        s_y = (f_I * f_J[:B]).sum(axis=1)
        if self.reselect:
            best = (f_I @ f_J[B:].T + self.margins).max(axis=1)
        else:
            best = (f_I * f_J[B:]).sum(axis=1) + self.margins
        hinge = float(xp.maximum(0, best - s_y).mean())
        diff = f_P - self.y_n
        aux = float(self.lam * (diff * diff).sum() / B)
        decay = self.alpha * sum(n0 - 2 * s * c1 + s * s * c2 for n0, c1, c2 in self.decay)
        return hinge + aux + decay

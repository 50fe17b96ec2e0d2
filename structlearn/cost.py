"""The max-margin cost of a mini-batch of extended data (eqs. 6, 11, 12), written once.

    cost = 1/B sum_i max(0, f_S(x_i, yhat_i) + Delta(yhat_i, y_i) - f_S(x_i, y_i))      (eq. 6)
         + lambda/B sum_i ||f_P(x_i) - y_i||^2                                          (eq. 11)
         + alpha sum_j ||W_j||_F^2                                                      (eq. 12)

Delta is the MPJPE between the root-relative poses in mm (eq. 8), times `margin_scale`. The
ground truth and the most-violated pose go through the same pose network in one call (shared
weights, gradients summed). The auxiliary gradient reaches h3 and below only (g7, h3, h1, h2 and,
when trained, the convolutions), as the paper notes.

eq12_parts is the one place where the three terms are combined; structnet_cost (the cost and its
gradients at the parameters) and StepCost (the line search's cost at theta - s g) both end in it.
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


@dataclass(frozen=True)
class Objective:
    """The weights of eq. 12: lam (the auxiliary task, eq. 11), alpha (weight decay) and the names of
    the decayed weight matrices."""
    lam: float
    alpha: float
    decay_names: tuple = ()

    def decay(self, params, need_grads=True):
        """alpha sum_j ||W_j||^2 and its gradient {W_j: 2 alpha W_j} (None without need_grads)."""
        value, grads = weight_decay(params, self.alpha, self.decay_names, need_grads=need_grads)
        return value, (grads if need_grads else None)


@dataclass(frozen=True)
class Violators:
    """The poses that eq. 6's hinge compares each example with.

    fixed: the extended data D = {(x_i, y_i, yhat_i)}: poses (B, 51) normalised, margins (B,) =
        Delta(y_i, yhat_i);
    among: the mini-batch's candidate set, yhat_i re-selected at the parameters (eq. 7): poses
        (C, 51) normalised, margins (B, C) = Delta(y_i, y_c).
    """
    poses: object
    margins: object
    reselect: bool

    @classmethod
    def fixed(cls, yhat_n, delta):
        return cls(yhat_n, delta, False)

    @classmethod
    def among(cls, cand_n, margins):
        return cls(cand_n, margins, True)

    def best(self, f_I, f_J):
        """(B,) f_S(x_i, yhat_i) + Delta(y_i, yhat_i), f_J (B or C, D) the embeddings of self.poses."""
        if self.reselect:
            return (f_I @ f_J.T + self.margins).max(axis=1)
        return (f_I * f_J).sum(axis=1) + self.margins


def eq12_parts(f_I, f_P, fJ_y, best, y_n, decay, lam):
    """The terms of eq. 12 on a batch: f_I (B, D), f_P (B, 51), fJ_y (B, D) the ground truths'
    embeddings, best (B,) from Violators.best, y_n (B, 51), decay the alpha term's value.
    Returns (CostParts, hinge (B,) of eq. 6, diff (B, 51) = f_P - y_n)."""
    xp = backend.get_array_module(f_I)
    B = y_n.shape[0]
    hinge = xp.maximum(0, best - (f_I * fJ_y).sum(axis=1))
    diff = f_P - y_n
    hinge_mean = float(hinge.mean())
    aux = float(lam * (diff * diff).sum() / B)
    return CostParts(hinge_mean + aux + decay, hinge_mean, aux, decay, float((hinge > 0).mean())), hinge, diff


def structnet_cost(net, params, f2, f3, y_n, violators, masks, objective, need_grads=True, need_features=False):
    """Cost of eq. 12 on a batch, and its gradients.

    f2, f3: conv features (B, d2), (B, d3); y_n: normalised ground-truth poses (B, 51); violators:
    Violators (gradients need Violators.fixed); masks: dropout masks or None; objective: Objective.
    Returns (CostParts, grads {name: array} or None, (g_f2, g_f3) or None).
    """
    xp = backend.get_array_module(f2)
    B = y_n.shape[0]
    hat, margins = violators.poses, violators.margins
    want = (B, hat.shape[0]) if violators.reselect else (B,)
    if (f2.shape[0] != B or f3.shape[0] != B or margins.shape != want or hat.ndim != 2
            or hat.shape[1] != y_n.shape[1] or (not violators.reselect and hat.shape[0] != B)):
        raise ValueError(f"structnet_cost: batch shapes disagree: f2 {tuple(f2.shape)}, f3 {tuple(f3.shape)}, "
                         f"y {tuple(y_n.shape)}, y_hat {tuple(hat.shape)}, delta {tuple(margins.shape)}")
    if need_grads and violators.reselect:
        raise ValueError("structnet_cost: gradients need the fixed extended data (Violators.fixed)")
    f_I, f_P, c_img = net.image.forward(params, f2, f3, masks)
    f_J, c_pose = net.pose.forward(params, xp.concatenate([y_n, violators.poses]))
    fJ_y, fJ_hat = f_J[:B], f_J[B:]
    decay, g_decay = objective.decay(params, need_grads)
    parts, hinge, diff = eq12_parts(f_I, f_P, fJ_y, violators.best(f_I, fJ_hat), y_n, decay, objective.lam)
    if not need_grads:
        return parts, None, None

    a = ((hinge > 0) / B).astype(f_I.dtype)[:, None]      # d cost / d hinge_i where active
    g_I = a * (fJ_hat - fJ_y)
    g_J = xp.concatenate([-a * f_I, a * f_I])
    g_P = (2.0 * objective.lam / B) * diff if objective.lam else None
    grads = net.pose.backward(params, c_pose, g_J)
    g2, g3, g_img = net.image.backward(params, c_img, g_I, g_P, need_features=need_features)
    add_grads(grads, g_img)
    add_grads(grads, g_decay)
    return parts, grads, ((g2, g3) if need_features else None)


def structnet_cost_from_images(net, params, images, y_n, violators, masks, objective, need_grads=True):
    """structnet_cost through the conv stack too (gradients for the convolutions as well), for
    fine-tuning the convolutions and for the full-graph gradient test. Returns (CostParts, grads)."""
    (f2, f3), c_conv = net.convs.forward(params, images)
    parts, grads, g_feat = structnet_cost(net, params, f2, f3, y_n, violators, masks, objective,
                                          need_grads=need_grads, need_features=need_grads)
    if need_grads:
        add_grads(grads, net.convs.backward(params, c_conv, *g_feat))
    return parts, grads


class StepCost:
    """cost(theta - s * g) of the line search, for many steps s, exactly and without re-running
    the layers whose input does not change with s (Sec. 4's line search is the hot path of stage 2).

    With the convolutions fixed, h1 and h2 see the (frozen, masked) conv features and h5 sees the
    poses, so their pre-activations are affine in s: z(s) = (x W + b) - s (x gW + gb), computed
    once; the branches run on from there (forward_from_pre) with the later layers at theta - s g.
    The weight decay is quadratic in s: alpha ||W - s gW||^2 = alpha (W.W - 2 s W.gW + s^2 gW.gW).
    With images (the convolutions trained), every trial runs the whole network at theta - s g.
    Tested equal to structnet_cost at the moved parameters, for both kinds of Violators.
    """

    def __init__(self, net, params, grads, f2, f3, y_n, violators, masks, objective, images=None):
        self.net, self.params, self.grads = net, params, grads
        self.y_n, self.violators, self.masks, self.objective, self.images = y_n, violators, masks, objective, images
        if images is not None:
            return
        xp = backend.get_array_module(f2)
        img, pose = net.image, net.pose
        (x1, x2), _ = img.first_inputs(params, f2, f3, masks)
        self.z1, self.z2 = self._affine(img.h1, x1), self._affine(img.h2, x2)
        poses = xp.concatenate([y_n, violators.poses])
        self.z5 = self._affine(pose.layers[0], poses) if pose.layers else (poses, None)  # raw: f_J(y) = y
        first = [img.h1, img.h2] + pose.layers[:1]
        fixed = {k for layer in first for k in layer.param_shapes()}
        self.moving = [k for k in grads if k not in fixed]
        self.decay = []
        for k in objective.decay_names:
            W, g = params[k], grads.get(k)
            self.decay.append((float(xp.vdot(W, W)), float(xp.vdot(W, g)) if g is not None else 0.0,
                               float(xp.vdot(g, g)) if g is not None else 0.0))

    def _affine(self, layer, x):
        """(z0, dz) with z(s) = z0 - s dz for the layer's pre-activation on fixed input x."""
        z0, _ = layer.forward(self.params, x)
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

    def __call__(self, s):
        net, B = self.net, self.y_n.shape[0]
        if self.images is not None:  # the features move with the step
            p = self.params.moved(self.grads, -s)
            f2, f3 = net.convs.features(p, self.images)
            return structnet_cost(net, p, f2, f3, self.y_n, self.violators, self.masks, self.objective,
                                  need_grads=False)[0].total
        p = dict(self.params)
        for k in self.moving:
            p[k] = self.params[k] - s * self.grads[k]
        f_I, f_P, _ = net.image.forward_from_pre(p, self._at(self.z1, s), self._at(self.z2, s))
        f_J, _ = net.pose.forward_from_pre(p, self._at(self.z5, s))
        decay = self.objective.alpha * sum(n0 - 2 * s * c1 + s * s * c2 for n0, c1, c2 in self.decay)
        parts, _, _ = eq12_parts(f_I, f_P, f_J[:B], self.violators.best(f_I, f_J[B:]), self.y_n, decay,
                                 self.objective.lam)
        return parts.total

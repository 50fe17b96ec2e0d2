"""Weight decay and plain SGD (no momentum: the paper found momentum "always hinders
convergence", Sec. 4) with an explicit step size chosen per mini-batch by a line search."""
from . import backend


def weight_decay(params, alpha, names=None, need_grads=True):
    """alpha * sum_j ||W_j||_F^2 over the weight matrices (eq. 12) and its gradient {W_j: 2 alpha W_j}."""
    names = params.weight_names if names is None else names
    cost, grads = 0.0, {}
    for k in names:
        W = params[k]
        cost += float(alpha * backend.get_array_module(W).vdot(W, W))  # no temporary of W's size
        if need_grads:
            grads[k] = 2.0 * alpha * W
    return cost, grads


def add_grads(total, grads):
    """total[k] += grads[k] (total is a dict built by the caller; new keys are copied in)."""
    for k, g in grads.items():
        if k in total:
            total[k] = total[k] + g
        else:
            total[k] = g
    return total


def sgd_step(params, grads, step_size):
    """In-place SGD without momentum: p <- p - step_size * g for every p with a gradient."""
    for k, g in grads.items():
        p = params[k]
        p -= p.dtype.type(step_size) * g.astype(p.dtype, copy=False)
    return params


class Adam:
    """Adam (Kingma & Ba, 2015) with bias correction; state m, v per name and the step count t.
    Not the paper's optimiser (Algorithm 1 takes a line-searched SGD step): an alternative to
    measure against it. state() / load_state() give and take flat {name: array} for checkpoints."""

    def __init__(self, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m, self.v, self.t = {}, {}, 0

    def step(self, params, grads):
        """In place: p <- p - lr * m_hat / (sqrt(v_hat) + eps) for every p with a gradient."""
        self.t += 1
        c1, c2 = 1 - self.beta1 ** self.t, 1 - self.beta2 ** self.t
        for k, g in grads.items():
            xp = backend.get_array_module(g)
            if k not in self.m:
                self.m[k], self.v[k] = xp.zeros_like(g), xp.zeros_like(g)
            m, v = self.m[k], self.v[k]
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * (g * g)
            params[k] -= (self.lr / c1) * m / (xp.sqrt(v / c2) + self.eps)
        return params

    def state(self):
        out = {"t": self.t}
        out.update({"m/" + k: a for k, a in self.m.items()})
        out.update({"v/" + k: a for k, a in self.v.items()})
        return out

    def load_state(self, arrays, to_device=lambda a: a):
        self.t = int(arrays["t"])
        self.m = {k[2:]: to_device(a) for k, a in arrays.items() if k.startswith("m/")}
        self.v = {k[2:]: to_device(a) for k, a in arrays.items() if k.startswith("v/")}

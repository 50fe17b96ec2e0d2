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

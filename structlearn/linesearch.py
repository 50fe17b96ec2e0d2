"""The step-size line search of Algorithm 1 (Sec. 4): the cost of the mini-batch's extended data
is evaluated at theta - eta * g for every eta of a log-spaced grid over [1e-7, 1e2] (Sec. 5.3),
and the step of least cost is taken. Non-finite costs are rejected; when no step gives a finite
cost, the search returns None and the caller skips the update (and logs it)."""
import math

import numpy as np


def step_grid(lo=1e-7, hi=1e2, points=10):
    """Log-spaced step sizes from lo to hi inclusive (points=10: one per decade)."""
    if not (0 < lo < hi) or points < 2:
        raise ValueError(f"bad line-search grid: lo={lo}, hi={hi}, points={points} (need 0 < lo < hi, points >= 2)")
    return np.geomspace(lo, hi, points)


def grid_line_search(cost_at, steps, combine=None):
    """(best step or None, [cost per step]) with cost_at(step) -> float; combine(costs) -> costs
    (data-parallel: the sum over ranks of their shares) before the choice."""
    costs = [float(cost_at(float(s))) for s in steps]
    if combine is not None:
        costs = combine(costs)
    finite = [(c, s) for c, s in zip(costs, steps) if math.isfinite(c)]
    if not finite:
        return None, costs
    _, best_step = min(finite, key=lambda cs: cs[0])
    return float(best_step), costs

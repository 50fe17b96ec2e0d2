"""nn.optim: SGD, weight decay and Adam against hand computations."""
import numpy as np

from nn import Params
from nn.optim import Adam, sgd_step, weight_decay


def test_sgd_and_decay():
    p = Params({"a.W": np.array([[1.0, -2.0]]), "a.b": np.array([0.5])})
    cost, g = weight_decay(p, 0.1)
    assert np.isclose(cost, 0.1 * 5.0) and set(g) == {"a.W"}
    np.testing.assert_allclose(g["a.W"], [[0.2, -0.4]])
    sgd_step(p, {"a.W": np.array([[1.0, 1.0]])}, 0.5)
    np.testing.assert_allclose(p["a.W"], [[0.5, -2.5]])


def test_adam_matches_the_update_rule_and_resumes():
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(3) for _ in range(4)]
    p = {"w": np.zeros(3)}
    opt = Adam(0.1, beta1=0.8, beta2=0.9, eps=1e-6)
    m = v = np.zeros(3)
    w = np.zeros(3)
    for t, g in enumerate(grads, start=1):
        opt.step(p, {"w": g})
        m, v = 0.8 * m + 0.2 * g, 0.9 * v + 0.1 * g * g
        w = w - 0.1 * (m / (1 - 0.8 ** t)) / (np.sqrt(v / (1 - 0.9 ** t)) + 1e-6)
        np.testing.assert_allclose(p["w"], w, rtol=1e-12)
    # a copy restored from state() continues exactly as the original
    again = Adam(0.1, beta1=0.8, beta2=0.9, eps=1e-6)
    again.load_state({k: np.copy(a) for k, a in opt.state().items()})
    q = {"w": p["w"].copy()}
    opt.step(p, {"w": grads[0]})
    again.step(q, {"w": grads[0]})
    np.testing.assert_array_equal(p["w"], q["w"])

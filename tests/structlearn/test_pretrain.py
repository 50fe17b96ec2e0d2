import numpy as np

from nn.gradcheck import check_gradients
from structlearn.network import MultiTaskNet
from structlearn.pretrain import detection_cells, momentum_step, multitask_cost

from .tiny import TINY, randomize_for_gradcheck


def test_detection_cells():
    joints = np.array([[[0.0, 0.0], [19.9, 19.9], [10.0, 5.0], [-1.0, 3.0], [3.0, 20.0]]])
    cells = detection_cells(joints, crop=20, grid=2)
    np.testing.assert_array_equal(cells, [[0, 3, 1, -1, -1]])


def test_multitask_cost_gradient_every_block():
    rng = np.random.default_rng(0)
    net = MultiTaskNet(TINY)
    params = net.init_params(rng, np.float64)
    randomize_for_gradcheck(params, rng)
    B = 5
    images = rng.standard_normal((B, 3, 20, 20))
    y_n = rng.uniform(-0.8, 0.8, (B, 51))
    cells = rng.integers(-1, 4, (B, 17))
    (f2, f3), _ = net.convs.forward(params, images)
    masks = net.image.make_masks(rng, B, f2.shape[1], f3.shape[1], np.float64)
    decay = params.weight_names
    parts, grads = multitask_cost(net, params, images, y_n, cells, masks, 0.5, 1e-2, decay)
    assert set(grads) == set(params) and parts.detect > 0 and parts.aux > 0

    def f():
        return multitask_cost(net, params, images, y_n, cells, masks, 0.5, 1e-2, decay, need_grads=False)[0].total
    errors = check_gradients(f, dict(params), grads, max_probes=25)
    assert max(errors.values()) < 1e-6, errors


def test_momentum_step():
    p = {"w": np.zeros(2)}
    v = {"w": np.zeros(2)}
    momentum_step(p, {"w": np.ones(2)}, v, lr=0.1, momentum=0.9)
    momentum_step(p, {"w": np.ones(2)}, v, lr=0.1, momentum=0.9)
    np.testing.assert_allclose(v["w"], -0.19)
    np.testing.assert_allclose(p["w"], -0.29)


def test_output_heads_start_at_zero():
    from structlearn.network import StructNet
    for net in (MultiTaskNet(TINY), StructNet(TINY)):
        params = net.init_params(np.random.default_rng(0))
        assert not params["g7.W"].any() and params["h3.W"].any()
    assert not MultiTaskNet(TINY).init_params(np.random.default_rng(0))["det.W"].any()

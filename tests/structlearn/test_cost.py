import numpy as np
import pytest

from nn.gradcheck import check_gradients
from structlearn.cost import Objective, Violators, structnet_cost, structnet_cost_from_images
from structlearn.network import POSE_EMBEDDINGS, StructNet

from .tiny import TINY, randomize_for_gradcheck


def _setup(kind, seed=0, B=6):
    rng = np.random.default_rng(seed)
    net = StructNet(TINY.with_(pose_embedding=kind))
    params = net.init_params(rng, np.float64)
    randomize_for_gradcheck(params, rng)
    images = rng.standard_normal((B, 3, 20, 20))
    y_n = rng.uniform(-0.8, 0.8, (B, 51))
    yhat_n = rng.uniform(-0.8, 0.8, (B, 51))
    (f2, f3), _ = net.convs.forward(params, images)
    masks = net.image.make_masks(rng, B, f2.shape[1], f3.shape[1], np.float64)
    # margins chosen so that half the hinges are clearly active and half clearly inactive:
    # the finite differences never cross a kink
    f_I, _, _ = net.image.forward(params, f2, f3, masks)
    f_J, _ = net.pose.forward(params, np.concatenate([y_n, yhat_n]))
    gap = (f_I * f_J[:B]).sum(1) - (f_I * f_J[B:]).sum(1)
    delta = gap + np.where(np.arange(B) % 2 == 0, 0.5, -0.5)
    return net, params, images, y_n, yhat_n, delta, masks


@pytest.mark.parametrize("kind", POSE_EMBEDDINGS)
def test_full_cost_gradient_every_block(kind):
    net, params, images, y_n, yhat_n, delta, masks = _setup(kind)
    lam, alpha = 0.7, 1e-2
    decay = net.decayed(params, train_convs=True)
    fixed, objective = Violators.fixed(yhat_n, delta), Objective(lam, alpha, decay)
    parts, grads = structnet_cost_from_images(net, params, images, y_n, fixed, masks, objective)
    assert 0 < parts.violated < 1 and parts.hinge > 0 and parts.aux > 0 and parts.decay > 0
    trainable = net.trainable(params, train_convs=True)
    assert set(grads) == set(trainable)
    if kind == "random1":
        assert "h5.W" not in grads  # the fixed random layer is not trained

    def f():
        return structnet_cost_from_images(net, params, images, y_n, fixed, masks, objective, need_grads=False)[0].total
    errors = check_gradients(f, {k: params[k] for k in trainable}, grads, max_probes=25)
    assert max(errors.values()) < 1e-6, errors
    # the convolutions' blocks are all there: image -> conv1 .. conv3
    assert {"conv1.W", "conv2.W", "conv3.W", "h1.W", "h4.W", "g7.W"} <= set(errors)


def test_cost_parts_match_equations():
    net, params, images, y_n, yhat_n, delta, masks = _setup("2layer", seed=3)
    (f2, f3), _ = net.convs.forward(params, images)
    lam, alpha = 1.0, 1e-3
    decay = net.decayed(params)
    parts, grads, _ = structnet_cost(net, params, f2, f3, y_n, Violators.fixed(yhat_n, delta), masks,
                                     Objective(lam, alpha, decay))
    f_I, f_P, _ = net.image.forward(params, f2, f3, masks)
    fJy, _ = net.pose.forward(params, y_n)
    fJh, _ = net.pose.forward(params, yhat_n)
    hinge = np.maximum(0, (f_I * fJh).sum(1) + delta - (f_I * fJy).sum(1))
    assert np.isclose(parts.hinge, hinge.mean())
    assert np.isclose(parts.aux, lam * ((f_P - y_n) ** 2).sum(1).mean())
    assert np.isclose(parts.decay, alpha * sum((params[k] ** 2).sum() for k in decay))
    assert np.isclose(parts.total, parts.hinge + parts.aux + parts.decay)
    assert not any(k.startswith("conv") for k in decay)   # frozen convolutions are not decayed
    assert not any(k.startswith("conv") for k in grads)


def test_aux_gradient_stays_below_h3():
    # with the hinge inactive everywhere, only the auxiliary and decay terms act: h4, h5, h6 get
    # decay gradients only (the paper: L_P has no effect on the pose network or h4)
    net, params, images, y_n, yhat_n, delta, masks = _setup("2layer", seed=4)
    (f2, f3), _ = net.convs.forward(params, images)
    parts, grads, _ = structnet_cost(net, params, f2, f3, y_n, Violators.fixed(yhat_n, delta - 1e3), masks,
                                     Objective(1.0, 0.0))
    assert parts.violated == 0
    for k in ("h4.W", "h4.b", "h5.W", "h6.W"):
        assert not np.any(grads[k]), k
    for k in ("g7.W", "h3.W", "h1.W", "h2.W"):
        assert np.any(grads[k]), k


def test_shape_mismatch_is_named():
    net, params, images, y_n, yhat_n, delta, masks = _setup("2layer")
    (f2, f3), _ = net.convs.forward(params, images)
    with pytest.raises(ValueError, match="batch shapes disagree"):
        structnet_cost(net, params, f2, f3, y_n, Violators.fixed(yhat_n[:-1], delta), masks, Objective(1.0, 0.0))


def test_max_margin_cost_equals_cost_at_most_violated_pose():
    from structlearn.search import candidate_margins, most_violated
    net, params, images, y_n, _, _, masks = _setup("2layer", seed=5)
    rng = np.random.default_rng(5)
    (f2, f3), _ = net.convs.forward(params, images)
    cand_n = rng.uniform(-0.8, 0.8, (9, 51))
    y_mm, cand_mm = rng.normal(0, 200, (len(y_n), 17, 3)), rng.normal(0, 200, (9, 17, 3))
    margins = candidate_margins(y_mm, cand_mm, 0.01)
    f_I, _, _ = net.image.forward(params, f2, f3, masks)
    v, delta, _ = most_violated(f_I, net.pose.forward(params, cand_n)[0], margins)
    objective = Objective(0.5, 1e-3, net.decayed(params))
    parts, _, _ = structnet_cost(net, params, f2, f3, y_n, Violators.fixed(cand_n[v], delta), masks, objective,
                                 need_grads=False)
    whole, _, _ = structnet_cost(net, params, f2, f3, y_n, Violators.among(cand_n, margins), masks, objective,
                                 need_grads=False)
    assert np.isclose(whole.total, parts.total) and np.isclose(whole.hinge, parts.hinge)


@pytest.mark.parametrize("kind", POSE_EMBEDDINGS)
def test_step_cost_equals_cost_at_moved_parameters(kind):
    from structlearn.cost import StepCost
    from structlearn.search import candidate_margins, most_violated
    net, params, images, y_n, _, _, masks = _setup(kind, seed=6)
    rng = np.random.default_rng(6)
    (f2, f3), _ = net.convs.forward(params, images)
    cand_n = rng.uniform(-0.8, 0.8, (7, 51))
    margins = candidate_margins(rng.normal(0, 200, (len(y_n), 17, 3)), rng.normal(0, 200, (7, 17, 3)), 0.01)
    f_I, _, _ = net.image.forward(params, f2, f3, masks)
    v, delta, _ = most_violated(f_I, net.pose.forward(params, cand_n)[0], margins)
    objective = Objective(0.5, 1e-2, net.decayed(params))
    among, fixed_D = Violators.among(cand_n, margins), Violators.fixed(cand_n[v], delta)
    _, grads, _ = structnet_cost(net, params, f2, f3, y_n, fixed_D, masks, objective)
    grads = {k: grads[k] for k in net.trainable(params)}
    whole = StepCost(net, params, grads, f2, f3, y_n, among, masks, objective)
    fixed = StepCost(net, params, grads, f2, f3, y_n, fixed_D, masks, objective)
    for s in (0.0, 1e-3, 0.1, 3.0):
        p = params.moved(grads, -s)
        expect = structnet_cost(net, p, f2, f3, y_n, among, masks, objective, need_grads=False)[0].total
        assert np.isclose(whole(s), expect, rtol=1e-10), (s, whole(s), expect)
        expect = structnet_cost(net, p, f2, f3, y_n, fixed_D, masks, objective, need_grads=False)[0].total
        assert np.isclose(fixed(s), expect, rtol=1e-10), (s, fixed(s), expect)


@pytest.mark.parametrize("preset", ["tiny", "cpu"])
def test_conv_features_are_forwards_bits(preset):
    """ConvStack.features (no caches, ReLUs in place) equals forward's (f2, f3) bit for bit."""
    from structlearn.network import PRESETS
    cfg = PRESETS[preset]
    net = StructNet(cfg)
    rng = np.random.default_rng(1)
    params = net.init_params(rng)
    images = rng.standard_normal((5, 3, cfg.input_size, cfg.input_size)).astype(np.float32)
    images[0] = 0.0                          # zeros through the ReLUs and the pooling's ties
    (f2, f3), _ = net.convs.forward(params, images)
    g2, g3 = net.convs.features(params, images)
    for a, b in ((f2, g2), (f3, g3)):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
    with pytest.raises(ValueError, match="conv stack: expected images"):
        net.convs.features(params, images[:, :, 1:])

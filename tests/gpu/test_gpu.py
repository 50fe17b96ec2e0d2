"""The GPU path against the NumPy path: one test body per layer, kernel and phase, run with both
array modules on the same inputs. Marked gpu (deselected by default; `pytest -m gpu`) and skipped
where CuPy or a CUDA device is missing."""
import numpy as np
import pytest

from nn import Dropout, Identity, Linear, Params, ReLU, Tanh, backend
from nn.conv import Conv2D
from nn.gradcheck import check_gradients
from nn.pool import MaxPool2D
from structlearn import search_kernels

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not backend.available, reason="needs CuPy and a CUDA device")]
cp = backend._cupy
TOL = {np.float32: dict(rtol=2e-4, atol=2e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}
DTYPES = [np.float32, np.float64]


def to_gpu(tree):
    return {k: cp.asarray(v) for k, v in tree.items()}


def assert_close(gpu, cpu, dtype, what):
    got = backend.to_numpy(gpu)
    scale = max(1.0, float(np.abs(cpu).max())) if np.size(cpu) else 1.0
    tol = TOL[dtype]
    np.testing.assert_allclose(got, cpu, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=what)


# ---- layers ------------------------------------------------------------------------------------
def _conv(algorithm, stride, pad):
    return lambda: (Conv2D("c", 3, 5, 3, stride=stride, pad=pad, algorithm=algorithm), (11, 9, 4, 3))


LAYERS = {
    "conv im2col stride 2 pad 1": _conv("im2col", 2, 1),
    "conv auto stride 1 (fft on the CPU, im2col kernel on the GPU)": _conv("auto", 1, 2),
    "conv fft (cuFFT)": _conv("fft", 1, 1),
    "maxpool odd sizes": lambda: (MaxPool2D("p", 2), (7, 9, 3, 4)),
    "relu": lambda: (ReLU(), (6, 10)),
    "tanh": lambda: (Tanh(), (6, 10)),
    "identity": lambda: (Identity(), (6, 10)),
    "linear": lambda: (Linear("fc", 10, 7), (6, 10)),
}


def _run(layer, params, x, gy, extra):
    y, cache = layer.forward(params, x, **extra)
    gx, grads = layer.backward(params, cache, gy)
    return y, gx, grads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_forward_backward_parity(name, dtype):
    rng = np.random.default_rng(0)
    layer, shape = LAYERS[name]()
    params = Params.init([layer], rng, dtype) if hasattr(layer, "param_shapes") else Params()
    for k in params:
        params[k] = rng.standard_normal(params[k].shape).astype(dtype)
    x = rng.standard_normal(shape).astype(dtype)
    y_cpu, _ = layer.forward(params, x)
    gy = rng.standard_normal(y_cpu.shape).astype(dtype)
    y, gx, grads = _run(layer, params, x, gy, {})
    y_g, gx_g, grads_g = _run(layer, Params(to_gpu(params)), cp.asarray(x), cp.asarray(gy), {})
    assert backend.is_gpu_array(y_g) and backend.is_gpu_array(gx_g)
    assert y_g.dtype == dtype and gx_g.dtype == dtype
    assert_close(y_g, y, dtype, f"{name} forward")
    assert_close(gx_g, gx, dtype, f"{name} input gradient")
    assert set(grads_g) == set(grads)
    for k in grads:
        assert_close(grads_g[k], grads[k], dtype, f"{name} {k}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_parity_with_a_fixed_mask(dtype):
    rng = np.random.default_rng(1)
    layer = Dropout("d", 0.75)
    x = rng.standard_normal((8, 16)).astype(dtype)
    mask = layer.make_mask(rng, x.shape, dtype)
    y, cache = layer.forward({}, x, True, mask=mask)
    y_g, cache_g = layer.forward({}, cp.asarray(x), True, mask=cp.asarray(mask))
    assert_close(y_g, y, dtype, "dropout forward")
    gy = rng.standard_normal(x.shape).astype(dtype)
    assert_close(layer.backward({}, cache_g, cp.asarray(gy))[0], layer.backward({}, cache, gy)[0], dtype,
                 "dropout backward")
    # a mask drawn for the GPU comes from the same host generator: the same mask on both paths
    m_cpu = layer.make_mask(np.random.default_rng(5), x.shape, dtype)
    m_gpu = layer.make_mask(np.random.default_rng(5), x.shape, dtype, cp)
    np.testing.assert_array_equal(backend.to_numpy(m_gpu), m_cpu)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_gpu_gradients_float64(name):
    """Finite differences of f = sum(layer(x) * R) on the device, float64."""
    rng = np.random.default_rng(2)
    layer, shape = LAYERS[name]()
    params = Params.init([layer], rng, np.float64) if hasattr(layer, "param_shapes") else Params()
    params = Params(to_gpu({k: rng.standard_normal(v.shape) for k, v in params.items()}))
    if isinstance(layer, MaxPool2D):  # distinct values, so the argmax never flips under a probe
        x = cp.asarray((rng.permutation(int(np.prod(shape))) * 0.05).reshape(shape))
    else:
        x = rng.standard_normal(shape)
        x = cp.asarray(np.where(x >= 0, x + 0.1, x - 0.1))  # away from ReLU's kink
    y, cache = layer.forward(params, x)
    R = cp.asarray(rng.standard_normal(y.shape))
    gx, grads = layer.backward(params, cache, R)

    def f():
        return float((layer.forward(params, x)[0] * R).sum())
    errors = check_gradients(f, {"x": x, **{k: params[k] for k in grads}}, {"x": gx, **grads}, max_probes=40, rng=rng)
    assert max(errors.values()) < 1e-6, errors


# ---- kernels -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_search_kernels_parity(dtype):
    from structlearn.search import candidate_margins, most_violated
    rng = np.random.default_rng(3)
    B, C, D = 128, 2010, 64
    y = rng.normal(0, 300, (B, 17, 3)).astype(dtype)
    cand = rng.normal(0, 300, (C, 17, 3)).astype(dtype)
    f_I, emb = rng.standard_normal((B, D)).astype(dtype), rng.standard_normal((C, D)).astype(dtype)
    margins = candidate_margins(y, cand, 0.1).astype(dtype)
    assert_close(search_kernels.pairwise_mpjpe(cp.asarray(y), cp.asarray(cand), 0.1), margins, dtype,
                 "pairwise_mpjpe")
    idx, margin, value = most_violated(f_I, emb, margins)
    idx_g, margin_g, value_g = most_violated(cp.asarray(f_I), cp.asarray(emb), None, cp.asarray(y),
                                             cp.asarray(cand), 0.1)  # the fused kernel
    values = f_I.astype(np.float64) @ emb.T.astype(np.float64) + margins
    best = values.max(axis=1)
    # float32 may pick another candidate whose value is within rounding of the best
    chosen = values[np.arange(B), backend.to_numpy(idx_g)]
    assert np.all(best - chosen <= 1e-4 * np.abs(best).max()), "fused search chose a clearly worse candidate"
    if dtype == np.float64:
        np.testing.assert_array_equal(backend.to_numpy(idx_g), idx)
    assert_close(value_g, value, dtype, "most-violated value")
    assert_close(margin_g, margins[np.arange(B), backend.to_numpy(idx_g)], dtype, "most-violated margin")


@pytest.mark.parametrize("k", [1, 36, 500])
def test_top_k_parity(k):
    from structlearn.inference import top_k_scores
    rng = np.random.default_rng(4)
    f_I, bank = rng.standard_normal((16, 32)), rng.standard_normal((20000, 32))
    s, i = top_k_scores(f_I, bank, k, chunk=4096)
    s_g, i_g = top_k_scores(cp.asarray(f_I), cp.asarray(bank), k, chunk=4096)
    np.testing.assert_array_equal(backend.to_numpy(i_g), i)
    np.testing.assert_allclose(backend.to_numpy(s_g), s, rtol=1e-12)


# ---- the StructNet cost and a training run -----------------------------------------------------
def test_structnet_cost_parity_float64():
    from structlearn.cost import Objective, Violators, structnet_cost_from_images
    from structlearn.network import StructNet
    from tests.structlearn.tiny import TINY, randomize_for_gradcheck
    rng = np.random.default_rng(5)
    net = StructNet(TINY)
    params = randomize_for_gradcheck(net.init_params(rng, np.float64), rng)
    B = 6
    images = rng.standard_normal((B, 3, 20, 20))
    y_n, yhat_n = rng.uniform(-0.8, 0.8, (B, 51)), rng.uniform(-0.8, 0.8, (B, 51))
    delta = rng.uniform(0, 2, B)
    (f2, f3), _ = net.convs.forward(params, images)
    masks = net.image.make_masks(rng, B, f2.shape[1], f3.shape[1], np.float64)
    objective = Objective(1.0, 1e-3, net.decayed(params, train_convs=True))
    parts, grads = structnet_cost_from_images(net, params, images, y_n, Violators.fixed(yhat_n, delta), masks,
                                              objective)
    gpu = lambda a: cp.asarray(a)  # noqa: E731
    parts_g, grads_g = structnet_cost_from_images(net, params.to("gpu"), gpu(images), gpu(y_n),
                                                  Violators.fixed(gpu(yhat_n), gpu(delta)),
                                                  {k: gpu(m) for k, m in masks.items()}, objective)
    assert parts_g.total == pytest.approx(parts.total, rel=1e-10)
    for k in grads:
        assert_close(grads_g[k], grads[k], np.float64, k)


def test_training_on_the_gpu_matches_the_cpu(tmp_path):
    """A tiny run with --device gpu: the same schedule, a cost trace close to the CPU's."""
    import json

    from data import synth
    from structlearn.config import TrainConfig
    from structlearn.train import train
    path = synth.generate(str(tmp_path / "tiny.h5"), scale=4 / synth.FRAMES_PER_SEQUENCE, seed=1, workers=1,
                          subjects=("S1", "S5", "S9"), actions=("Walking", "Sitting"), progress=False)
    runs = {}
    for device in ("cpu", "gpu"):
        cfg = TrainConfig(data=path, out=str(tmp_path / device), preset="tiny", subjects=("S1", "S5"), progress=False,
                          pretrain_epochs=1, pretrain_batch_size=16, epochs=2, batch_size=32, candidates=60,
                          frequent=5, device=device)
        train(cfg, log=lambda *a: None)
        runs[device] = [json.loads(line) for line in open(tmp_path / device / "log.jsonl")]
    cpu, gpu = runs["cpu"], runs["gpu"]
    assert len(cpu) == len(gpu)
    # float32 on different hardware: the first steps agree closely; later ones may drift apart
    for a, b in zip(cpu[:3], gpu[:3]):
        assert b["cost"] == pytest.approx(a["cost"], rel=1e-3), (a, b)

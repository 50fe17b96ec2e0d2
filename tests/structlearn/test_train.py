"""End-to-end training on a tiny synthetic dataset: learning happens, and resume is exact."""
import json

import numpy as np
import pytest

from data import synth
from data.dataset import PoseDataset, root_relative
from structlearn.config import TrainConfig
from structlearn.evaluate import Evaluator
from structlearn.model import load_model
from structlearn.train import Trainer, TrainingError, train

SUBJECTS, ACTIONS = ("S1", "S5", "S9"), ("Walking", "Sitting", "Greeting")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    # random rooms: on 96 tiny training images the lab file's fixed background leaves the tiny network
    # at the mean pose within this test's budget (250 against 248 mm), the random rooms do not
    path = synth.generate(str(d / "tiny.h5"), scale=4 / synth.FRAMES_PER_SEQUENCE, seed=1, workers=1,
                          subjects=SUBJECTS, actions=ACTIONS, rooms="random", progress=False)
    return d, path


def _cfg(path, out, **kw):
    base = dict(data=path, out=str(out), preset="tiny", subjects=("S1", "S5"), progress=False,
                pretrain_epochs=2, pretrain_batch_size=16, epochs=2, batch_size=32, candidates=60, frequent=5,
                checkpoint_every=3)
    base.update(kw)
    return TrainConfig(**base)


def _log(out):
    rows = [json.loads(line) for line in open(out / "log.jsonl")]
    for r in rows:
        r.pop("seconds", None), [r.pop(k) for k in list(r) if k.startswith("seconds_")]
    return rows


def test_training_lowers_cost_and_mpjpe(tiny_data):
    d, path = tiny_data
    quiet = dict(log=lambda *a: None)
    # the starting point: pre-training, then StructNet with 0 max-margin epochs
    start = d / "start"
    train(_cfg(path, start, pretrain_epochs=4, epochs=0), **quiet)
    out = d / "learn"
    # 30 epochs: after 20 the tiny network sat at the mean pose on some draws of the data
    # (training MPJPE over the mean pose's, data seeds 1-3: 0.99, 0.97, 1.05 with generator v2,
    # 1.08, 1.00, 1.04 with v3); after 30: 0.90-0.91 (v2), 0.88-0.96 (v3)
    cfg = _cfg(path, out, stage="structnet", pretrained=str(start / "pretrain_model.npz"), epochs=30,
               candidates=100, dropout=0.0, margin_scale=0.1)
    train(cfg, **quiet)
    mm = [r for r in _log(out) if r["stage"] == "structnet"]
    per_epoch = [np.mean([r["cost"] for r in mm if r["epoch"] == e]) for e in range(cfg.epochs)]
    assert per_epoch[-1] < 0.9 * per_epoch[0], per_epoch

    # training-set MPJPE of StructNet-Max: lower than at the start and than the mean pose
    def train_mpjpe(run):
        return Evaluator(run, data=path, cache=False, **quiet).alignment(progress=False)["mean_mm"]
    before, after = train_mpjpe(start), train_mpjpe(out)
    ds = PoseDataset(path)
    bank = root_relative(ds.poses(ds.select(subjects=["S1", "S5"])))
    mean_pose = np.linalg.norm(bank - bank.mean(0), axis=-1).mean()
    assert after < 0.8 * before and after < mean_pose, (after, before, mean_pose)


def test_resume_equals_uninterrupted(tiny_data):
    # the paper's line search + SGD (--recipe paper); the default Adam is tested below
    d, path = tiny_data
    ls = dict(optimizer="linesearch")
    straight = d / "straight"
    train(_cfg(path, straight, **ls), log=lambda *a: None)
    pieces = d / "pieces"
    n_pre = len([r for r in _log(straight) if r["stage"] == "pretrain"])
    train(_cfg(path, pieces, stop_after=4, **ls), log=lambda *a: None)                   # stops inside pre-training
    train(_cfg(path, pieces, stop_after=n_pre - 4 + 2, resume=True, **ls), log=lambda *a: None)  # inside Algorithm 1
    assert not (pieces / "model.npz").exists()
    train(_cfg(path, pieces, resume=True, **ls), log=lambda *a: None)
    a, _, _ = load_model(str(straight / "model.npz"))[1], None, None
    b = load_model(str(pieces / "model.npz"))[1]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert _log(straight) == _log(pieces)


def test_resume_with_adam_equals_uninterrupted(tiny_data):
    # the default optimiser keeps its moments in the checkpoint
    d, path = tiny_data
    kw = dict(optimizer="adam", adam_lr=1e-3, pretrain_epochs=1)
    straight, pieces = d / "adam-straight", d / "adam-pieces"
    train(_cfg(path, straight, **kw), log=lambda *a: None)
    n_pre = len([r for r in _log(straight) if r["stage"] == "pretrain"])
    train(_cfg(path, pieces, stop_after=n_pre + 4, **kw), log=lambda *a: None)   # inside Algorithm 1
    train(_cfg(path, pieces, resume=True, **kw), log=lambda *a: None)
    a, b = load_model(str(straight / "model.npz"))[1], load_model(str(pieces / "model.npz"))[1]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    rows = _log(pieces)
    assert rows == _log(straight)
    assert all(r["step"] == 1e-3 and r["cost_after"] is None for r in rows if r["stage"] == "structnet")


def test_adam_decay_lowers_the_rate_for_the_last_quarter_and_resumes_exactly(tiny_data):
    from structlearn.train import last_quarter_rate
    assert [last_quarter_rate(1.0, 0.1, e, 4) for e in range(4)] == [1.0, 1.0, 1.0, 0.1]
    assert [last_quarter_rate(2.0, 0.5, e, 5) for e in range(5)] == [2.0] * 4 + [1.0]   # ceil(3.75) = 4
    d, path = tiny_data
    kw = dict(optimizer="adam", adam_lr=1e-3, adam_decay=0.1, pretrain_epochs=1, epochs=4, batch_size=48)
    straight, pieces = d / "decay-straight", d / "decay-pieces"
    train(_cfg(path, straight, **kw), log=lambda *a: None)
    rows = [r for r in _log(straight) if r["stage"] == "structnet"]
    assert {r["epoch"] for r in rows} == {0, 1, 2, 3}
    assert all(r["step"] == pytest.approx(1e-4 if r["epoch"] == 3 else 1e-3, rel=1e-12) for r in rows)
    n_pre = len([r for r in _log(straight) if r["stage"] == "pretrain"])
    per_epoch = len(rows) // 4
    train(_cfg(path, pieces, stop_after=n_pre + 3 * per_epoch + 1, **kw), log=lambda *a: None)   # in the last quarter
    train(_cfg(path, pieces, resume=True, **kw), log=lambda *a: None)
    assert _log(pieces) == _log(straight)
    a, b = load_model(str(straight / "model.npz"))[1], load_model(str(pieces / "model.npz"))[1]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_resume_rejects_another_configuration(tiny_data):
    d, path = tiny_data
    out = d / "other"
    train(_cfg(path, out, stop_after=2), log=lambda *a: None)
    with pytest.raises(TrainingError, match=r"another configuration \(lam: checkpoint 1.0, now 0.5"):
        Trainer(_cfg(path, out, lam=0.5, resume=True))
    with pytest.raises(TrainingError, match="already holds a run"):
        Trainer(_cfg(path, out))
    with pytest.raises(TrainingError, match="no checkpoint"):
        Trainer(_cfg(path, d / "empty", resume=True))


LS = dict(optimizer="linesearch")


@pytest.mark.parametrize("kw", [dict(lam=0.0), dict(pose_embedding="random1"), dict(pose_embedding="raw"),
                                LS, dict(ls_reselect=False, **LS), dict(train_convs=True, **LS),
                                dict(train_convs=True)])
def test_variants_train(tiny_data, kw):
    # the ablations of Table 1 (StructNet*: lambda = 0) and Table 3, and the non-default line search
    d, path = tiny_data
    out = d / ("variant-" + "-".join(f"{k}{v}" for k, v in kw.items()))
    cfg = _cfg(path, out, pretrain_epochs=1, epochs=1, **kw)
    train(cfg, log=lambda *a: None)
    _, pre, _ = load_model(str(out / "pretrain_model.npz"))
    net, model, _ = load_model(str(out / "model.npz"))
    init = net.init_params(np.random.default_rng([cfg.seed, 2]))       # Algorithm 1's initial layers
    frozen = set(net.pose.frozen) | (set() if cfg.train_convs else set(net.conv_names))
    for k in model:
        start = pre[k] if k in net.conv_names else init[k]
        if k in frozen:
            np.testing.assert_array_equal(model[k], start, err_msg=k)
        elif cfg.lam or not k.startswith("g7."):        # lambda = 0: g7 starts at zero and only decays
            assert not np.array_equal(model[k], start), k
    # every update took a finite step; the line search's did not raise the batch's cost
    rows = [r for r in _log(out) if r["stage"] == "structnet"]
    assert rows and all(r["step"] is not None and np.isfinite(r["cost"]) for r in rows)
    if cfg.optimizer == "linesearch":
        assert all(r["cost_after"] <= r["cost"] * (1 + 1e-4) for r in rows), rows


def test_bad_settings_are_one_line_errors(tiny_data):
    d, path = tiny_data
    for kw, match in [(dict(subjects=("S2",)), "S2"), (dict(candidates=0), "candidates"),
                      (dict(ls_min=1.0, ls_max=0.1), "line-search"), (dict(stage="both"), "--stage")]:
        with pytest.raises((TrainingError, ValueError), match=match):
            Trainer(_cfg(path, d / "bad", **kw))

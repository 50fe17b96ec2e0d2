"""Evaluation library: aggregation, streaming top-k, bank cache, the bank floor, normaliser check, result
objects, EvalConfig, the sweep over shares of the bank; best-of-k, Hit@k and cross-view retrieval; the
pose space shared with the trainer and the learning curves of --eval-every."""
import json
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from data.dataset import PoseDataset
from data.h36m import N_JOINTS
from data.imagestats import ImageStats
from data.metrics import nearest_pose, p_mpjpe, pairwise_mpjpe
from data import metrics as metrics_module
from structlearn import evaluate as E
from structlearn import report, retrieval
from structlearn.bank import bank_cache_path, check_normalizer, load_or_build_bank, pose_space
from structlearn.config import TrainConfig
from structlearn.curves import CURVES_FIGURE, CURVES_FILE, read_records
from structlearn.encoding import PoseNormalizer
from structlearn.inference import average_prefixes, top_k_scores
from structlearn.model import load_model
from structlearn.network import StructNet
from structlearn.protocol import EvalConfig
from structlearn.train import Trainer
from structlearn.trained_run import EvalError, LoadedModel, resolve_run
from tests.data.conftest import write_tiny_dataset

from .tiny import TINY


# ----------------------------------------------------------------------------- aggregation
def test_per_action_and_summary_hand_computed():
    # Walking 1, 2, 3 (mean 2, std sqrt(2/3)); Eating 10: all frames (1+2+3+10)/4 = 4,
    # mean of actions (2 + 10)/2 = 6.
    values = [1.0, 10.0, 2.0, 3.0]
    actions = ["Walking", "Eating", "Walking", "Walking"]
    s = E.summarize(values, actions)
    assert list(s["per_action"]) == ["Eating", "Walking"]  # data.h36m.ACTIONS order
    assert s["per_action"]["Walking"] == pytest.approx({"mean": 2.0, "std": np.sqrt(2 / 3), "n": 3})
    assert s["per_action"]["Eating"] == {"mean": 10.0, "std": 0.0, "n": 1}
    assert s["all_frames"] == pytest.approx(4.0)
    assert s["action_mean"] == pytest.approx(6.0)
    assert s["all_frames_std"] == pytest.approx(np.std(values))
    assert s["n"] == 4


def test_per_action_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        E.per_action([1.0, 2.0], ["Walking"])


def test_evenly_spaced():
    idx = np.arange(100, 110)
    np.testing.assert_array_equal(E.evenly_spaced(idx, 0), idx)
    np.testing.assert_array_equal(E.evenly_spaced(idx, 20), idx)
    np.testing.assert_array_equal(E.evenly_spaced(idx, 4), [100, 103, 106, 109])
    np.testing.assert_array_equal(E.evenly_spaced(idx, 1), [100])


def test_default_A_and_modes():
    assert E.default_A(100_000) == 500          # the paper's A
    assert E.default_A(7200) == 36
    assert E.default_A(10) == 1
    assert E.parse_modes("apf,max") == ("max", "apf")
    assert E.parse_modes("all") == E.MODES
    with pytest.raises(ValueError, match="unknown mode 'foo'"):
        E.parse_modes("max,foo")
    assert E.method_name("apf", 500) == "StructNet-Avg(500)-APF"


# ----------------------------------------------------------------------------- top-k
@given(B=st.integers(1, 6), M=st.integers(1, 300), D=st.integers(1, 9), k=st.integers(1, 320),
       chunk=st.integers(1, 128), seed=st.integers(0, 2 ** 16))
def test_top_k_matches_full_sort(B, M, D, k, chunk, seed):
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((B, D))
    bank = rng.standard_normal((M, D))
    scores, idx = top_k_scores(f, bank, k, chunk=chunk)
    full = f @ bank.T
    ref = np.argsort(-full, axis=1, kind="stable")[:, :min(k, M)]
    assert idx.shape == ref.shape == scores.shape
    np.testing.assert_array_equal(idx, ref)           # float64, continuous: no ties
    np.testing.assert_allclose(scores, np.take_along_axis(full, ref, axis=1), rtol=1e-12, atol=1e-12)


def test_top_k_best_first_and_late_winners():
    # the best poses sit in the last chunk: the running threshold must let them in
    rng = np.random.default_rng(3)
    f = rng.standard_normal((4, 8))
    bank = rng.standard_normal((1000, 8))
    bank[990:] = 5 * f[0]
    scores, idx = top_k_scores(f, bank, 12, chunk=64)
    assert set(range(990, 1000)) <= set(idx[0].tolist())
    assert np.all(np.diff(scores, axis=1) <= 0)


class _Recording(np.ndarray):
    """A bank that records the number of rows of every slice taken from it."""
    sizes = []

    def __getitem__(self, item):
        out = super().__getitem__(item)
        if isinstance(item, slice):
            _Recording.sizes.append(len(np.arange(len(self))[item]))
        return np.asarray(out)


def test_top_k_streams_in_chunks():
    rng = np.random.default_rng(0)
    bank = rng.standard_normal((1000, 5)).view(_Recording)
    _Recording.sizes = []
    top_k_scores(rng.standard_normal((3, 5)), bank, 50, chunk=128)
    assert _Recording.sizes and max(_Recording.sizes) <= 128 and sum(_Recording.sizes) == 1000


def test_top_k_rejects_bad_k():
    with pytest.raises(ValueError):
        top_k_scores(np.ones((1, 2)), np.ones((3, 2)), 0)


def test_average_prefixes_matches_the_mean_of_the_best():
    rng = np.random.default_rng(1)
    bank = rng.standard_normal((40, N_JOINTS, 3)).astype(np.float32)
    top = np.stack([rng.permutation(40)[:25] for _ in range(6)])
    out = average_prefixes(top, bank, [1, 7, 25, 30])
    for a in (1, 7, 25):
        np.testing.assert_allclose(out[a], bank[top[:, :a]].mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(out[30], out[25])  # clipped to the 25 available


# ----------------------------------------------------------------------------- bank cache
def _tiny_model(tmp_path, rng):
    net = StructNet(TINY)
    params = net.init_params(rng, np.float32)
    poses = rng.normal(0, 300, (50, N_JOINTS, 3)).astype(np.float32)
    poses -= poses[:, :1]
    normalizer = PoseNormalizer.fit(poses)
    stats = ImageStats(np.full(3, 100.0), np.eye(3) * 400)
    model = LoadedModel(str(tmp_path / "model.npz"), "structnet", net, params, {}, normalizer, stats)
    return model, poses


def test_bank_cache_reused_and_invalidated(tmp_path):
    rng = np.random.default_rng(0)
    model, poses = _tiny_model(tmp_path, rng)
    rows = np.arange(len(poses))
    cache = tmp_path / "model.bank.npz"
    b1 = load_or_build_bank(model, poses, rows, rows)
    assert b1.source == "computed" and cache.exists()
    assert bank_cache_path(model.path) == str(cache)
    b2 = load_or_build_bank(model, poses, rows, rows)
    assert b2.source == "cache"
    np.testing.assert_array_equal(b1.emb, b2.emb)

    # a parameter outside the pose branch does not change the embeddings: cache still valid
    model.params["h4.W"] = model.params["h4.W"] + 1
    assert load_or_build_bank(model, poses, rows, rows).source == "cache"

    # a pose-branch parameter does: recomputed, and the new values are right
    model.params["h6.b"] = model.params["h6.b"] + 1
    b3 = load_or_build_bank(model, poses, rows, rows)
    assert b3.source == "computed" and b3.fingerprint != b1.fingerprint
    assert not np.allclose(b3.emb, b1.emb)
    assert load_or_build_bank(model, poses, rows, rows).source == "cache"

    # other bank poses (another data file) and another normaliser invalidate it too
    assert load_or_build_bank(model, poses[:-1], rows[:-1], rows[:-1]).source == "computed"
    model.normalizer = PoseNormalizer(model.normalizer.offset, model.normalizer.scale * 2)
    assert load_or_build_bank(model, poses[:-1], rows[:-1], rows[:-1]).source == "computed"

    # a corrupt cache is replaced, not trusted
    cache.write_bytes(b"not an npz")
    assert load_or_build_bank(model, poses, rows, rows).source == "computed"
    assert load_or_build_bank(model, poses, rows, rows).source == "cache"


def test_bank_no_cache_writes_nothing(tmp_path):
    model, poses = _tiny_model(tmp_path, np.random.default_rng(1))
    b = load_or_build_bank(model, poses, np.arange(len(poses)), np.arange(len(poses)), cache=False)
    assert b.source == "computed" and not os.path.exists(bank_cache_path(model.path))


# ----------------------------------------------------------------------------- the bank floor
def _clustered_poses(rng, n, centres=4, spread=40.0):
    """n poses (n, 17, 3) float32 around a few random poses: a bank with structure, as motions give.
    spread "line": poses on one line in pose space, where MPJPE is a 1-D metric and the triangle
    inequality behind the pruning holds with equality (any bound that is too tight loses winners)."""
    if spread == "line":
        rng = np.random.default_rng(0)    # the same line for the bank and the test poses
        base, direction = rng.normal(0, 300, (N_JOINTS, 3)), rng.normal(0, 1, (N_JOINTS, 3))
        return (base + np.round(np.random.default_rng(n).uniform(-500, 500, n))[:, None, None] * direction
                ).astype(np.float32)
    c = rng.normal(0, 300, (centres, N_JOINTS, 3))
    return (c[rng.integers(0, centres, n)] + rng.normal(0, spread, (n, N_JOINTS, 3))).astype(np.float32)


@given(M=st.integers(1, 300), N=st.integers(1, 30), k=st.integers(1, 40), iters=st.integers(0, 2),
       spread=st.sampled_from([5.0, 40.0, 300.0, "line"]), seed=st.integers(0, 2 ** 16))
def test_nearest_pose_equals_brute_force(M, N, k, iters, spread, seed):
    # spread 300 mm: no structure, so the nearest pose is often outside the first clusters searched
    rng = np.random.default_rng(seed)
    bank = _clustered_poses(rng, M, spread=spread)
    bank[::5] = bank[0]                                   # exact duplicates: ties
    q = _clustered_poses(rng, N, spread=spread)
    q[::3] = bank[rng.integers(0, M, len(q[::3]))]        # test poses in the bank: floor 0
    floor, idx = nearest_pose(bank, q, n_clusters=k, iters=iters)
    full = pairwise_mpjpe(q, bank)
    np.testing.assert_array_equal(floor, full.min(axis=1))      # exact, value for value
    np.testing.assert_array_equal(full[np.arange(N), idx], floor)
    assert floor.dtype == np.float32 and np.all(floor[::3] == 0)


def test_nearest_pose_prunes(monkeypatch):
    # the point of the bounds: far fewer pairs than brute force on a bank with structure
    rng = np.random.default_rng(5)
    bank, q = _clustered_poses(rng, 4000, centres=20), _clustered_poses(rng, 200, centres=20)
    pairs = []

    def counting(a, b, chunk=512):
        pairs.append(len(a) * len(b))
        return pairwise_mpjpe(a, b, chunk)
    monkeypatch.setattr(metrics_module, "pairwise_mpjpe", counting)
    floor, _ = nearest_pose(bank, q)
    np.testing.assert_array_equal(floor, pairwise_mpjpe(q, bank).min(axis=1))
    assert sum(pairs) < 0.5 * len(q) * len(bank), sum(pairs) / (len(q) * len(bank))


def test_nearest_pose_rejects_an_empty_bank():
    with pytest.raises(ValueError, match="empty bank"):
        nearest_pose(np.zeros((0, N_JOINTS, 3)), np.zeros((2, N_JOINTS, 3)))


# ----------------------------------------------------------------------------- Figure 3 over shares of the bank
def test_default_sweep_is_shares_of_the_bank():
    assert E.SWEEP_SHARES == (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05)
    assert E.sweep_values("auto", 180_000) == (90, 180, 450, 900, 1800, 3600, 9000)
    assert E.sweep_values("auto", 7200) == (4, 7, 18, 36, 72, 144, 360)   # 0.5% = default_A
    assert E.default_A(7200) in E.sweep_values("auto", 7200)
    assert E.sweep_values("auto", 30) == (1, 2)                            # rounded, at least 1, unique
    assert E.sweep_values([500, 1, 20, 500, 10 ** 6], 1000) == (1, 20, 500, 1000)
    with pytest.raises(ValueError, match="auto"):
        E.sweep_values("all", 10)
    cfg = EvalConfig(sweep="auto")
    assert cfg.sweep == "auto" and cfg.to_dict()["sweep"] == "auto"


# ----------------------------------------------------------------------------- data checks
def test_check_normalizer():
    rng = np.random.default_rng(2)
    poses = rng.normal(0, 300, (200, N_JOINTS, 3))
    poses -= poses[:, :1]
    norm = PoseNormalizer.fit(poses)
    check_normalizer(norm, poses, "d.h5", "m.npz")                    # its own data
    check_normalizer(norm, 1.1 * poses, "d.h5", "m.npz")              # similar data
    with pytest.raises(EvalError, match="disagree"):
        check_normalizer(norm, poses / 1000, "d.h5", "m.npz")         # metres
    with pytest.raises(EvalError, match="disagree"):
        check_normalizer(norm, poses * 5, "d.h5", "m.npz")


def test_resolve_run(tmp_path):
    with pytest.raises(EvalError, match="no such run directory"):
        resolve_run(tmp_path / "absent")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "log.jsonl").write_text("")
    with pytest.raises(EvalError, match="no model.npz"):
        resolve_run(tmp_path / "run")
    (tmp_path / "run" / "model.npz").write_bytes(b"")
    assert resolve_run(tmp_path / "run") == (str(tmp_path / "run" / "model.npz"), None)
    (tmp_path / "run" / "pretrain_model.npz").write_bytes(b"")
    assert resolve_run(tmp_path / "run" / "model.npz")[1] == str(tmp_path / "run" / "pretrain_model.npz")


# ----------------------------------------------------------------------------- results and tables
def _output():
    out = E.EvalOutput(rows=np.arange(4), subjects=np.array(["S9"] * 4, dtype=object),
                       actions=np.array(["Walking", "Walking", "Walking", "Eating"], dtype=object), A=2)
    out.mpjpe = {"max": np.array([1.0, 2.0, 3.0, 10.0]), "avg": np.array([1.0, 1.0, 1.0, 1.0])}
    out.pmpjpe = {"max": np.array([0.5, 0.5, 0.5, 0.5]), "avg": np.array([0.25, 0.25, 0.25, 0.25])}
    out.sweep = {5: {"mpjpe": np.full(4, 7.0), "pmpjpe": np.full(4, 3.0)}}
    return out


def test_mode_results_schema():
    res = report.mode_results(_output(), ("max", "avg"), ["S9"], {"bank_poses": 9})
    assert [(r["mode"], r["A"], r["sweep"]) for r in res] == [("max", 1, False), ("avg", 2, False), ("avg", 5, True)]
    r = res[0]
    assert r["method"] == "StructNet-Max" and r["in_paper"] and r["subjects"] == ["S9"]
    assert r["mpjpe"]["Walking"] == {"mean": 2.0, "std": pytest.approx(np.sqrt(2 / 3)), "n": 3}
    assert r["mpjpe_all_frames"] == 4.0 and r["mpjpe_action_mean"] == 6.0
    assert r["pmpjpe_all_frames"] == 0.5 and r["n_frames"] == 4 and r["context"] == {"bank_poses": 9}
    assert res[2]["mpjpe_all_frames"] == 7.0


def test_format_table_columns_and_overall_rows():
    res = report.mode_results(_output(), ("max", "avg"), ["S9"])[:2]
    text = report.format_table(res, "mpjpe", "T")
    lines = text.splitlines()
    assert lines[0] == "T"
    assert "Max" in lines[2] and "Avg(2)" in lines[2]
    walking = next(line for line in lines if line.startswith("Walking"))
    assert walking.split()[1] == "3" and "2.00 (  0.8)" in walking and "1.00 (  0.0)" in walking
    frames = next(line for line in lines if line.startswith("All (frames)"))
    actions = next(line for line in lines if line.startswith("All (actions)"))
    assert "4.00" in frames and "6.00" in actions and "1.00" in frames


def test_skeleton_rows_alternate_subjects():
    rows = np.arange(12)
    subjects = np.array(["S9"] * 6 + ["S11"] * 6, dtype=object)
    actions = np.array(["Walking", "Eating", "Sitting"] * 4, dtype=object)
    picked = report.skeleton_rows(rows, subjects, actions, n=2)
    meta = [(subjects[r], actions[r]) for r in picked]
    assert meta == [("S9", "Eating"), ("S11", "Walking")]


def test_eval_config_defaults_and_dict():
    cfg = EvalConfig(subjects="S11,s9", modes=["max", "avg"], sweep=[1, 5])
    assert cfg.subjects == ("S9", "S11") and cfg.modes == ("max", "avg") and cfg.sweep == (1, 5)
    d = cfg.to_dict()
    assert d["subjects"] == ["S9", "S11"] and d["apf"]["n_particles"] == cfg.apf.n_particles
    assert EvalConfig(**{**d, "apf": cfg.apf}) == cfg
    assert EvalConfig().modes == E.MODES and EvalConfig().A is None
    with pytest.raises(ValueError, match="export_path"):
        EvalConfig(export_k=3)


# ----------------------------------------------------------------------------- training: pose space, --eval-every
def _train_cfg(path, out, **kw):
    base = dict(data=path, out=str(out), preset="tiny", subjects=("S1", "S5"), progress=False, stage="structnet",
                pretrained="none", epochs=3, batch_size=16, candidates=20, frequent=3, checkpoint_every=2, dropout=0.5)
    base.update(kw)
    return TrainConfig(**base)


def _train(cfg):
    trainer = Trainer(cfg, log=lambda *a: None)
    trainer.run()
    return trainer


def _without_seconds(records):
    return [{k: v for k, v in r.items() if k != "seconds" and not k.startswith("seconds_")} for r in records]


@pytest.fixture(scope="module")
def curve_runs(tmp_path_factory):
    """A file with a dense pose bank (pose-only entries between the image rows), and Algorithm 1 run
    three ways: without --eval-every, with --eval-every 2, and with it in three pieces (stopped inside
    epoch 1, then exactly at the end of epoch 2, a due curve point, then resumed to the end)."""
    d = tmp_path_factory.mktemp("curves")
    path = write_tiny_dataset(d / "bank.h5", n_per=8, subjects=("S1", "S5", "S9"), actions=("Walking", "Eating"),
                              bank_extra=4)
    off = _train(_train_cfg(path, d / "off"))
    on = _train(_train_cfg(path, d / "on", eval_every=2))
    _train(_train_cfg(path, d / "pieces", eval_every=2, stop_after=5))             # stops at epoch 1, batch 1
    _train(_train_cfg(path, d / "pieces", eval_every=2, stop_after=3, resume=True))  # at the end of epoch 1
    assert read_records(d / "pieces" / CURVES_FILE)[-1]["epoch"] == 0             # epoch 2's point not yet made
    _train(_train_cfg(path, d / "pieces", eval_every=2, resume=True))
    return d, path, off, on


def _log(run_dir):
    return _without_seconds(json.loads(line) for line in open(run_dir / "log.jsonl"))


def test_eval_every_leaves_training_unchanged(curve_runs):
    d, _, _, _ = curve_runs
    a = load_model(str(d / "off" / "model.npz"))[1]
    for other in ("on", "pieces"):
        b = load_model(str(d / other / "model.npz"))[1]
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{other}: {k}")
        assert _log(d / other) == _log(d / "off")
    assert not (d / "off" / CURVES_FILE).exists()


def test_eval_every_writes_the_curve_records(curve_runs):
    d, path, _, _ = curve_runs
    records = read_records(d / "on" / CURVES_FILE)
    assert [r["epoch"] for r in records] == [0, 2, 3]          # the start, every 2nd epoch, the end
    assert _without_seconds(read_records(d / "pieces" / CURVES_FILE)) == _without_seconds(records)  # resume exact
    assert (d / "on" / CURVES_FIGURE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ds = PoseDataset(path)
    bank_size = len(ds.bank_select(subjects=["S1", "S5"]))
    for r in records:
        assert r["bank_poses"] == bank_size and 0 <= r["train"]["share_30mm"] <= 1
        assert r["train"]["images"] == len(ds.select(subjects=["S1", "S5"]))
        te = r["test"]
        assert te["subjects"] == ["S9"] and te["images"] == len(ds.select(subjects=["S9"])) and te["A"] == 1
        assert 0 < te["bank_floor"] <= te["max"] and te["avg"] > 0 and te["pred"] > 0
    assert records[0]["test"]["max"] != records[-1]["test"]["max"]   # the bank embeddings follow the parameters

    # the last record is what the evaluator gives for the saved model: the same code paths and parameters
    ev = E.Evaluator(d / "on", cache=False, log=lambda *a: None)
    rows = ds.select(subjects=["S9"])
    out = ev.run(rows, ("max", "avg", "pred"), 1, progress=False)
    last = records[-1]
    for m in ("max", "avg", "pred"):
        assert last["test"][m] == pytest.approx(out.mpjpe[m].mean(), rel=1e-6)
    assert last["test"]["bank_floor"] == pytest.approx(out.bank_floor.mean(), rel=1e-6)
    align = ev.alignment(progress=False)
    assert last["train"]["share_30mm"] == align["share_30mm"]
    assert last["train"]["median_mm"] == pytest.approx(align["median_mm"], rel=1e-6)


def test_trainer_and_evaluator_share_the_pose_space(curve_runs):
    d, path, off, _ = curve_runs
    ds = PoseDataset(path)
    bidx, poses = pose_space(ds, ("S1", "S5"))
    assert len(bidx) > len(ds.select(subjects=["S1", "S5"]))       # the dense bank, not the image rows
    assert (ds.bank_image_rows(bidx) == -1).any()
    np.testing.assert_array_equal(off.bank_mm, poses)              # Algorithm 1's pose space Y
    assert off.normalizer.to_dict() == PoseNormalizer.fit(poses).to_dict()
    ev = E.Evaluator(d / "off", cache=False, log=lambda *a: None)
    np.testing.assert_array_equal(ev.bank.poses, poses)            # the evaluation's bank
    np.testing.assert_array_equal(ev.bank.index, bidx)
    np.testing.assert_array_equal(ev.bank.rows, ds.bank_image_rows(bidx))


# ----------------------------------------------------------------------------- rankings: best-of-k, Hit@k, retrieval
def test_best_of_k_and_hits_brute_force():
    rng = np.random.default_rng(3)
    errors = rng.uniform(0, 100, (30, 12))
    best = retrieval.best_of_k(errors, (1, 5, 12, 40))
    for k in (1, 5, 12):
        np.testing.assert_array_equal(best[k], errors[:, :k].min(axis=1))
    np.testing.assert_array_equal(best[40], errors.min(axis=1))                    # k clipped to K
    assert all(np.all(best[a] >= best[b]) for a, b in ((1, 5), (5, 12)))          # non-increasing in k
    hits = retrieval.hits_at_k(errors, (1, 5, 12), 20.0)
    for k, h in hits.items():
        np.testing.assert_array_equal(h, (errors[:, :k] <= 20.0).any(axis=1))
    with pytest.raises(ValueError, match="errors"):
        retrieval.best_of_k(np.zeros((3, 0)), (1,))


def _brute_cross_view(f_I, poses, cameras, q, threshold, gallery_camera=None):
    """Query q against every test image of another camera (or of gallery_camera): full sort, P-MPJPE."""
    other = np.flatnonzero(cameras != cameras[q] if gallery_camera is None else cameras == gallery_camera)
    order = other[np.argsort(-(f_I[other] @ f_I[q]), kind="stable")]
    err = p_mpjpe(poses[order], np.broadcast_to(poses[q], poses[order].shape))
    return {k: bool((err[:k] <= threshold).any()) for k in retrieval.RETRIEVAL_KS}


def test_cross_view_retrieval_brute_force():
    rng = np.random.default_rng(4)
    N, cams = 45, np.array(["54138969", "55011271", "58860488"])
    cameras = cams[rng.integers(0, 3, N)]
    poses = rng.normal(0, 200, (N, N_JOINTS, 3)).astype(np.float32)
    f_I = rng.normal(size=(N, 5)).astype(np.float32)
    thr = float(np.median(p_mpjpe(poses[:, None].repeat(N, 1), poses[None].repeat(N, 0))))
    res = retrieval.cross_view(f_I, poses, cameras, threshold=thr, batch=7, chunk=4)
    assert res["queries"] == N and len(res["pairs"]) == 6
    brute = [_brute_cross_view(f_I, poses, cameras, q, thr) for q in range(N)]
    for k in retrieval.RETRIEVAL_KS:
        assert res["overall"]["hit_at_k"][str(k)] == pytest.approx(np.mean([b[k] for b in brute]))
    shares = [res["overall"]["hit_at_k"][str(k)] for k in retrieval.RETRIEVAL_KS]
    assert shares == sorted(shares) and 0 < shares[0] < 1                          # non-decreasing in k
    pair = res["pairs"][1]                                                         # one camera pair, by brute force
    qs = np.flatnonzero(cameras == pair["query_camera"])
    assert (pair["queries"], pair["gallery"]) == (len(qs), int((cameras == pair["gallery_camera"]).sum()))
    for k in retrieval.RETRIEVAL_KS:
        want = np.mean([_brute_cross_view(f_I, poses, cameras, q, thr, pair["gallery_camera"])[k] for q in qs])
        assert pair["hit_at_k"][str(k)] == pytest.approx(want)
    one = retrieval.cross_view(f_I, poses, np.full(N, "54138969"), threshold=thr)
    assert one["overall"] is None and one["pairs"] == []


def test_mode_results_n_mpjpe_and_best_of():
    out = _output()
    out.n_mpjpe = {"max": np.array([0.1, 0.2, 0.3, 1.0]), "avg": np.full(4, 0.1)}
    out.sweep[5]["n_mpjpe"] = np.full(4, 2.0)
    res = report.mode_results(out, ("max", "avg"), ["S9"])
    assert res[0]["n_mpjpe"]["Walking"]["mean"] == pytest.approx(0.2) and res[0]["n_mpjpe_all_frames"] == 0.4
    assert res[0]["n_mpjpe_action_mean"] == pytest.approx(0.6) and res[2]["n_mpjpe_all_frames"] == 2.0
    assert res[0]["mpjpe_all_frames"] == 4.0 and res[0]["pmpjpe_all_frames"] == 0.5      # unchanged
    out.best_of = {1: out.mpjpe["max"], 5: np.array([1.0, 1.0, 1.0, 2.0])}
    best = report.best_of_results(out)
    assert [(b["k"], b["method"], b["mpjpe_all_frames"]) for b in best] == [(1, "Best-of-1", 4.0),
                                                                              (5, "Best-of-5", 1.25)]
    assert best[1]["mpjpe_action_mean"] == 1.5 and "Best-of-5" in report.format_table(best, "mpjpe")

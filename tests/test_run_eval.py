"""run_eval.py end to end on a tiny dataset with randomly initialised tiny models, and its
answers to bad input (one line on stderr, non-zero exit, no traceback)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import run_eval
from data import h36m
from data.dataset import PoseDataset, root_relative
from data.vp3d import load_positions_3d, read_vp3d
from data.h36m import POSE_DIM
from data.imagestats import ImageStats
from data.loader import BatchLoader
from data.metrics import mpjpe, p_mpjpe, pairwise_mpjpe
from nn import backend
from structlearn.checkpoint import load_checkpoint, save_checkpoint
from structlearn.config import TrainConfig
from structlearn.evaluate import sweep_values
from structlearn.encoding import PoseNormalizer
from structlearn.inference import image_outputs, pose_embeddings
from structlearn.model import load_model, save_model
from structlearn.network import MultiTaskNet, NetConfig, StructNet
from tests.data.conftest import write_tiny_dataset
from tests.structlearn.test_evaluate import _brute_cross_view
from tests.cli import run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 128x128 images downsampled by 4 and centre-cropped to 20x20
NET = NetConfig(input_size=20, downsample=4, convs=((3, 2), (3, 3), (2, 2)), hidden=8, embed=6, dropout=0.5,
                detect_grid=2)
FAST_APF = ["--apf-particles", "8", "--apf-layers", "2"]


def make_run(run_dir, data, subjects=("S1",), pretrain=True, normalizer=None, seed=0):
    ds = PoseDataset(data)
    idx = ds.select(subjects=list(subjects))
    normalizer = normalizer or PoseNormalizer.fit(root_relative(ds.poses(idx)))
    stats = ImageStats.for_subjects(ds, subjects)
    ds.close()
    cfg = TrainConfig(data=str(data), subjects=tuple(subjects))
    extra = {"subjects": list(subjects), "data": str(data)}
    rng = np.random.default_rng(seed)
    os.makedirs(run_dir, exist_ok=True)
    save_model(os.path.join(run_dir, "model.npz"), StructNet(NET).init_params(rng), "structnet", NET, normalizer,
               stats, cfg, extra)
    if pretrain:
        save_model(os.path.join(run_dir, "pretrain_model.npz"), MultiTaskNet(NET).init_params(rng), "multitask",
                   NET, normalizer, stats, cfg, extra)
    return str(run_dir)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = write_tiny_dataset(root / "tiny.h5", n_per=6, subjects=("S1", "S9"), actions=("Walking", "Eating"))
    run = make_run(root / "run", data)
    return root, data, run


def call(argv, capsys):
    return run_main(run_eval.main, argv, capsys)


def one_line_error(code, err, expected, want_code=1):
    assert code == want_code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert expected in lines[-1], lines
    if want_code == 1:
        assert len(lines) == 1 and lines[0].startswith("run_eval.py: error:"), lines


# ----------------------------------------------------------------------------- end to end
def test_end_to_end_json_schema_and_values(setup, capsys, tmp_path):
    root, data, run = setup
    out_json, topk = tmp_path / "r.json", tmp_path / "topk.npz"
    code, out, err = call(["--run", run, "--subjects", "S9", "--mode", "all", "--A", "3", "--sweep-A", "1,2,5",
                           "--json", out_json, "--export-topk", "4", topk, "--train-images", "10", "--batch-size",
                           "7", "--no-progress", *FAST_APF], capsys)
    assert code == 0, err
    assert "Table 1" in out and "P-MPJPE" in out and "All (frames)" in out and "All (actions)" in out
    assert "training-set alignment" in out
    res = json.loads(out_json.read_text())
    assert isinstance(res, list)
    main = [r for r in res if not r["sweep"]]
    assert [r["mode"] for r in main] == ["max", "avg", "apf", "ik", "pred", "hml"]
    assert [r["A"] for r in main] == [1, 3, 3, 3, None, None]
    assert [(r["mode"], r["A"]) for r in res if r["sweep"]] == [("avg", 1), ("avg", 2), ("avg", 5)]
    for r in res:
        assert r["subjects"] == ["S9"]
        assert set(r["mpjpe"]) == {"Walking", "Eating"} == set(r["pmpjpe"])
        assert sum(v["n"] for v in r["mpjpe"].values()) == r["n_frames"] == 24
        for v in r["mpjpe"].values():
            assert set(v) == {"mean", "std", "n"} and v["mean"] > 0 and v["std"] >= 0
        for key in ("mpjpe_all_frames", "mpjpe_action_mean", "pmpjpe_all_frames", "pmpjpe_action_mean"):
            assert isinstance(r[key], float) and r[key] > 0
        assert r["pmpjpe_all_frames"] <= r["mpjpe_all_frames"] + 1e-9
        frames = sum(v["mean"] * v["n"] for v in r["mpjpe"].values()) / r["n_frames"]
        assert r["mpjpe_all_frames"] == pytest.approx(frames)
        assert r["mpjpe_action_mean"] == pytest.approx(np.mean([v["mean"] for v in r["mpjpe"].values()]))
    by = {r["mode"]: r for r in main}
    assert by["ik"]["in_paper"] is False and by["apf"]["in_paper"] is True
    sweep = {r["A"]: r for r in res if r["sweep"]}
    assert sweep[1]["mpjpe_all_frames"] == pytest.approx(by["max"]["mpjpe_all_frames"])
    assert res[0]["context"]["bank_poses"] == 24
    assert 1 <= res[0]["context"]["distinct_top1"] <= 24

    # the numbers, recomputed without the streaming code: full score matrix, full sort
    net, params, meta = load_model(os.path.join(run, "model.npz"))
    ds = PoseDataset(data)
    norm, stats = PoseNormalizer.from_dict(meta["normalizer"]), ImageStats.from_dict(meta["image_stats"])
    bank_rows = ds.select(subjects=["S1"])
    bank = root_relative(ds.poses(bank_rows))
    test_rows = ds.select(subjects=["S9"])
    batch = next(BatchLoader(ds, test_rows, 100, train=False, stats=stats, crop=20, downsample=4).epoch(0))
    f_I, f_P = image_outputs(net, params, batch.images)
    scores = f_I @ pose_embeddings(net, params, norm.normalize(bank)).T
    order = np.argsort(-scores, axis=1)
    assert by["max"]["mpjpe_all_frames"] == pytest.approx(mpjpe(bank[order[:, 0]], batch.poses).mean(), rel=1e-5)
    avg3 = bank[order[:, :3]].mean(axis=1)
    assert by["avg"]["mpjpe_all_frames"] == pytest.approx(mpjpe(avg3, batch.poses).mean(), rel=1e-5)
    assert by["pred"]["mpjpe_all_frames"] == pytest.approx(mpjpe(norm.denormalize(f_P), batch.poses).mean(), rel=1e-5)
    mean_pose = np.broadcast_to(bank.mean(axis=0), batch.poses.shape)
    assert res[0]["context"]["mean_pose_mpjpe"] == pytest.approx(mpjpe(mean_pose, batch.poses).mean(), rel=1e-5)
    walking = batch.index[ds.metadata(batch.index)["action"] == "Walking"]
    e = mpjpe(bank[order[:, 0]], batch.poses)[np.isin(batch.index, walking)]
    assert by["max"]["mpjpe"]["Walking"]["mean"] == pytest.approx(e.mean(), rel=1e-5)
    assert by["max"]["mpjpe"]["Walking"]["std"] == pytest.approx(e.std(), rel=1e-4)

    # multiple hypotheses
    z = np.load(topk)
    assert z["poses"].shape == (24, 4, 17, 3) and z["scores"].shape == (24, 4)
    assert np.all(np.diff(z["scores"], axis=1) <= 0)
    np.testing.assert_array_equal(z["rows"], test_rows)
    np.testing.assert_allclose(z["scores"][:, 0], scores.max(axis=1), rtol=1e-5)
    np.testing.assert_allclose(z["poses"], root_relative(ds.poses(z["bank_rows"].ravel())).reshape(24, 4, 17, 3),
                               atol=1e-4)
    assert set(z["subject"]) == {"S9"} and set(z["action"]) == {"Walking", "Eating"}
    assert os.path.exists(os.path.join(run, "model.bank.npz"))
    ds.close()


@pytest.fixture(scope="module")
def bank_setup(tmp_path_factory):
    """A file with a dense pose bank: every image row's pose plus 3 pose-only frames per sequence and camera."""
    root = tmp_path_factory.mktemp("bank")
    data = write_tiny_dataset(root / "bank.h5", n_per=6, subjects=("S1", "S9"), actions=("Walking", "Eating"),
                              bank_extra=3)
    return root, data, make_run(root / "run", data, pretrain=False)


def test_dense_bank_floor_topk_and_auto_sweep(bank_setup, capsys, tmp_path):
    _, data, run = bank_setup
    out_json, topk, figs = tmp_path / "r.json", tmp_path / "topk.npz", tmp_path / "figs"
    code, out, err = call(["--run", run, "--subjects", "S9", "--mode", "max,avg", "--sweep-A", "auto", "--json",
                           out_json, "--export-topk", "5", topk, "--figures", figs, "--train-images", "10",
                           "--no-progress"], capsys)
    assert code == 0, err
    ds = PoseDataset(data)
    bidx = ds.bank_select(subjects=["S1"])
    bank = root_relative(ds.bank_poses(bidx)).astype(np.float32)
    M = len(bidx)
    assert M == 36 and M > len(ds.select(subjects=["S1"]))     # the dense bank, not the 24 training images
    res = json.loads(out_json.read_text())
    ctx = res[0]["context"]
    assert (ctx["bank_poses"], ctx["bank_with_images"], ctx["bank_rate_hz"]) == (36, 24, 10.0)
    assert "pose bank: 36 training poses of S1 (the file's pose bank at 10 Hz, 24 of them with an image)" in out

    # the bank floor, against brute force: printed beside the mean pose, in the context, per action
    test_rows = ds.select(subjects=["S9"])
    gt = root_relative(ds.poses(test_rows)).astype(np.float32)
    floor = pairwise_mpjpe(gt, bank).min(axis=1)
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("bank floor:"))
    assert lines[at - 1].startswith("reference: the mean training pose")
    assert f"has MPJPE {floor.mean():.2f} mm (all frames)" in lines[at] and "36-pose bank" in lines[at]
    assert ctx["bank_floor"]["mpjpe_all_frames"] == pytest.approx(floor.mean(), rel=1e-6)
    actions = ds.metadata(test_rows)["action"]
    for a in ("Walking", "Eating"):
        f = floor[actions == a]
        assert ctx["bank_floor"]["per_action"][a] == {"mean": pytest.approx(f.mean(), rel=1e-6),
                                                      "std": pytest.approx(f.std(), rel=1e-5), "n": len(f)}
    by = {r["mode"]: r for r in res if not r["sweep"]}
    assert ctx["bank_floor"]["mpjpe_all_frames"] <= by["max"]["mpjpe_all_frames"]

    # --sweep-A auto: A at the shares of the bank (36 poses: 1 and 2), and the share in every object
    swept = [r for r in res if r["sweep"]]
    assert [r["A"] for r in swept] == list(sweep_values("auto", M)) == [1, 2]
    assert [r["A_share"] for r in swept] == [1 / 36, 2 / 36] and by["max"]["A_share"] == 1 / 36
    assert (figs / "fig3_error_vs_A.png").exists()

    # Max and the top-k export over the dense bank, recomputed with a full score matrix
    net, params, meta = load_model(os.path.join(run, "model.npz"))
    norm, stats = PoseNormalizer.from_dict(meta["normalizer"]), ImageStats.from_dict(meta["image_stats"])
    batch = next(BatchLoader(ds, test_rows, 100, train=False, stats=stats, crop=20, downsample=4).epoch(0))
    f_I, _ = image_outputs(net, params, batch.images)
    order = np.argsort(-(f_I @ pose_embeddings(net, params, norm.normalize(bank)).T), axis=1)
    assert by["max"]["mpjpe_all_frames"] == pytest.approx(mpjpe(bank[order[:, 0]], gt).mean(), rel=1e-5)
    z = np.load(topk)
    np.testing.assert_array_equal(z["bank_index"], bidx[order[:, :5]])           # entries of the file's bank
    np.testing.assert_array_equal(z["bank_rows"], ds.bank_image_rows(z["bank_index"].ravel()).reshape(-1, 5))
    np.testing.assert_allclose(z["poses"], bank[order[:, :5]])
    shown = z["bank_rows"] >= 0                                                 # -1: a pose-only entry
    np.testing.assert_allclose(z["poses"][shown], root_relative(ds.poses(z["bank_rows"][shown])), atol=1e-4)
    ds.close()


def _full_ranking(run, data, subjects):
    """Without the streaming code: the test images' f_I, the bank of S1, the full score matrix's
    order (best first), the root-relative ground truth and the test rows."""
    net, params, meta = load_model(os.path.join(run, "model.npz"))
    ds = PoseDataset(data)
    norm, stats = PoseNormalizer.from_dict(meta["normalizer"]), ImageStats.from_dict(meta["image_stats"])
    bank = root_relative(ds.poses(ds.select(subjects=["S1"])))
    rows = ds.select(subjects=subjects)
    batch = next(BatchLoader(ds, rows, 100, train=False, stats=stats, crop=20, downsample=4).epoch(0))
    f_I, _ = image_outputs(net, params, batch.images)
    order = np.argsort(-(f_I @ pose_embeddings(net, params, norm.normalize(bank)).T), axis=1)
    return ds, f_I, bank, order, batch.poses, rows


def test_best_of_k_retrieval_and_vp3d_export(setup, capsys, tmp_path):
    _, data, run = setup
    ds, f_I, bank, order, gt, rows = _full_ranking(run, data, ["S9"])
    cameras = ds.metadata(rows)["camera"].astype(str)
    pose_err = p_mpjpe(bank[order[:, :20]], np.broadcast_to(gt[:, None], (len(gt), 20, 17, 3)))
    thr = float(np.round(np.median(pose_err), 1))                # a threshold that some queries meet
    out_json, vp3d, figs = tmp_path / "r.json", tmp_path / "vp3d.npz", tmp_path / "figs"
    vp3d_world = tmp_path / "vp3d_world.npz"
    code, out, err = call(["--run", run, "--subjects", "S9", "--mode", "max,avg", "--A", "3", "--best-of", "1,2,5,30",
                           "--retrieval", "--retrieval-mm", thr, "--json", out_json, "--export-vp3d", vp3d, "--figures",
                           figs, "--train-images", "0", "--no-progress", "--export-vp3d-world", vp3d_world], capsys)
    assert code == 0, err
    for title in ("Protocol #1 (MPJPE)", "Protocol #2 (P-MPJPE)", "N-MPJPE (scale-aligned)", "Best-of-k MPJPE",
                  "image-to-pose", "cross-view", "54138969 -> 55011271"):
        assert title in out
    assert "--best-of 30 clipped to the 24-pose bank" in out
    res = json.loads(out_json.read_text())
    by = {r["mode"]: r for r in res}
    ctx = res[0]["context"]

    # best-of-k: best-of-1 is StructNet-Max exactly, non-increasing in k, and brute force over the full ranking
    best = ctx["best_of"]
    assert [b["k"] for b in best] == [1, 2, 5, 24]
    assert best[0]["mpjpe"] == by["max"]["mpjpe"] and best[0]["mpjpe_all_frames"] == by["max"]["mpjpe_all_frames"]
    for a, b in zip(best, best[1:]):
        assert b["mpjpe_all_frames"] <= a["mpjpe_all_frames"]
        assert all(b["mpjpe"][x]["mean"] <= a["mpjpe"][x]["mean"] for x in a["mpjpe"])
    for b in best:
        k = b["k"]
        brute = mpjpe(bank[order[:, :k]], np.broadcast_to(gt[:, None], (len(gt), k, 17, 3))).min(axis=1)
        assert b["mpjpe_all_frames"] == pytest.approx(brute.mean(), rel=1e-5)
    assert best[-1]["mpjpe_all_frames"] == pytest.approx(ctx["bank_floor"]["mpjpe_all_frames"], rel=1e-5)  # whole bank
    for r in res:
        assert r["n_mpjpe_all_frames"] > 0 and set(r["n_mpjpe"]) == set(r["mpjpe"])

    # retrieval: Hit@k non-decreasing in k; image-to-pose and one cross-view query by brute force
    ret = ctx["retrieval"]
    assert ret["threshold_mm"] == thr and ret["ks"] == [1, 10, 20] and "given" in ret["rule"]
    ip, cv = ret["image_to_pose"]["overall"]["hit_at_k"], ret["cross_view"]["overall"]["hit_at_k"]
    for hits in (ip, cv):
        assert hits["1"] <= hits["10"] <= hits["20"] and hits["20"] > 0
    for k in (1, 10, 20):
        assert ip[str(k)] == pytest.approx((pose_err[:, :k] <= thr).any(axis=1).mean())
    cv_all = [_brute_cross_view(f_I, gt, cameras, q, thr) for q in range(len(gt))]
    for k in (1, 10, 20):
        assert cv[str(k)] == pytest.approx(np.mean([b[k] for b in cv_all]))
    assert {(p["query_camera"], p["gallery_camera"]) for p in ret["cross_view"]["pairs"]} == {
        ("54138969", "55011271"), ("55011271", "54138969")}
    assert (figs / "best_of_k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the VideoPose3D export: Avg(3) (the first of PREFERRED evaluated), metres, per camera in frame order
    got, raw = load_positions_3d(vp3d), read_vp3d(vp3d)
    assert str(raw["method"]) == "StructNet-Avg(3)" and list(got["S9"]) == ["Eating", "Walking"]
    avg3 = bank[order[:, :3]].mean(axis=1)
    meta = ds.metadata(rows)
    for action, views in got["S9"].items():
        for cam, arr, frames in zip(raw["cameras"].item()["S9"][action], views, raw["frames"].item()["S9"][action]):
            sel = np.flatnonzero((meta["action"] == action) & (meta["camera"] == cam))
            sel = sel[np.argsort(meta["frame"][sel])]
            np.testing.assert_array_equal(frames, meta["frame"][sel])
            np.testing.assert_allclose(arr, avg3[sel] / 1000.0, atol=1e-6)
            np.testing.assert_allclose(load_positions_3d(vp3d, "positions_3d_gt")["S9"][action][
                raw["cameras"].item()["S9"][action].index(cam)], gt[sel] / 1000.0, atol=1e-6)
    # ... and in world coordinates: the same layout, each prediction placed at the true root and
    # moved by its camera's extrinsics (the file's); back in the camera it is the camera export
    world, raw_w = load_positions_3d(vp3d_world), read_vp3d(vp3d_world)
    world_gt = load_positions_3d(vp3d_world, "positions_3d_gt")
    assert "world coordinates" in str(raw_w["coordinates"]) and str(raw_w["method"]) == "StructNet-Avg(3)"
    absolute = ds.poses(rows).astype(np.float64)
    for action, views in world["S9"].items():
        assert raw_w["cameras"].item()["S9"][action] == raw["cameras"].item()["S9"][action]
        for i, (cam, arr) in enumerate(zip(raw_w["cameras"].item()["S9"][action], views)):
            sel = np.flatnonzero((meta["action"] == action) & (meta["camera"] == cam))
            sel = sel[np.argsort(meta["frame"][sel])]
            R, T = ds.extrinsics("S9", cam)
            np.testing.assert_allclose(arr * 1000.0, h36m.camera_to_world(avg3[sel] + absolute[sel, :1], R, T),
                                       atol=0.01)
            np.testing.assert_allclose(world_gt["S9"][action][i] * 1000.0, h36m.camera_to_world(absolute[sel], R, T),
                                       atol=0.01)                 # float32 metres: ~1e-3 mm
            back = h36m.world_to_camera(arr.astype(np.float64) * 1000.0, R, T) - absolute[sel, :1]
            np.testing.assert_allclose(back, got["S9"][action][i] * 1000.0, atol=0.01)
    ds.close()


def test_new_metrics_leave_the_existing_numbers_alone(setup, capsys, tmp_path):
    """--best-of and --retrieval change no existing number: the JSON equals a run without them
    but for the added keys (and timings)."""
    _, _, run = setup
    results = []
    for extra in (["--best-of", ""], ["--best-of", "1,5,50", "--retrieval"]):
        path = tmp_path / "r.json"
        code, _, err = call(["--run", run, "--subjects", "S9", "--mode", "max,avg,pred", "--A", "2", "--sweep-A", "1,4",
                             "--json", path, "--train-images", "5", "--no-progress", *extra], capsys)
        assert code == 0, err
        results.append(json.loads(path.read_text()))
    plain, more = results
    assert plain[0]["context"]["best_of"] == [] and plain[0]["context"]["retrieval"] is None
    for a, b in zip(plain, more):
        for key in a:
            if key != "context":
                assert a[key] == b[key], key
        for key in set(a["context"]) - {"seconds", "best_of", "retrieval"}:
            assert a["context"][key] == b["context"][key], key


def test_batch_size_does_not_change_results(setup, capsys, tmp_path):
    _, _, run = setup
    results = []
    for bs in (5, 256):
        path = tmp_path / f"r{bs}.json"
        code, _, err = call(["--run", run, "--subjects", "S9", "--mode", "max,avg,apf", "--A", "2", "--json", path,
                             "--batch-size", bs, "--train-images", "0", "--no-progress", *FAST_APF], capsys)
        assert code == 0, err
        results.append(json.loads(path.read_text()))
    for a, b in zip(*results):
        assert a["mpjpe_all_frames"] == pytest.approx(b["mpjpe_all_frames"], rel=1e-6)


def test_default_modes_skip_hml_without_pretrain(tmp_path, capsys):
    data = write_tiny_dataset(tmp_path / "d.h5", n_per=2)
    run = make_run(tmp_path / "run", data, pretrain=False)
    path = tmp_path / "r.json"
    code, out, err = call(["--run", run, "--subjects", "S9", "--json", path, "--train-images", "0", "--max-images",
                           "5", "--no-progress", *FAST_APF], capsys)
    assert code == 0, err
    assert "DconvMP-HML (hml) skipped" in out
    res = json.loads(path.read_text())
    assert [r["mode"] for r in res] == ["max", "avg", "apf", "ik", "pred"]
    assert res[0]["n_frames"] == 5                     # --max-images
    assert res[1]["A"] == 1                            # default A: 0.5% of 8 bank poses, at least 1


def test_figures(setup, capsys, tmp_path):
    _, _, run = setup
    code, out, err = call(["--run", run, "--subjects", "S9", "--mode", "max,avg", "--A", "2", "--sweep-A", "1,2,4",
                           "--figures", tmp_path / "figs", "--train-images", "24", "--no-progress"], capsys)
    assert code == 0, err
    for name in ("fig3_error_vs_A.png", "fig4_embedding.png", "skeletons.png"):
        path = tmp_path / "figs" / name
        assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- bad input
def test_missing_run_directory_subprocess(tmp_path):
    # the real script, as a user runs it: exit status and stderr
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "run_eval.py"), "--run", str(tmp_path / "nope")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "no such run directory" in proc.stderr


def test_run_without_model(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.npz").write_bytes(b"")
    one_line_error(*call(["--run", tmp_path / "run"], capsys)[::2], "no model.npz")


def test_corrupt_model(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.npz").write_bytes(b"garbage")
    one_line_error(*call(["--run", tmp_path / "run"], capsys)[::2], "unreadable")


def test_model_and_data_disagree_normaliser(setup, tmp_path, capsys):
    _, data, _ = setup
    wrong = PoseNormalizer(np.zeros(POSE_DIM), np.full(POSE_DIM, 1e5))     # as if trained on poses in other units
    run = make_run(tmp_path / "run", data, pretrain=False, normalizer=wrong)
    one_line_error(*call(["--run", run, "--subjects", "S9"], capsys)[::2], "disagree")


def test_model_and_data_disagree_joint_count(setup, tmp_path, capsys):
    _, data, run = setup
    params, state, _ = load_checkpoint(os.path.join(run, "model.npz"))
    state["normalizer"] = {"offset": [0.0] * 48, "scale": [1.0] * 48}   # a 16-joint model
    (tmp_path / "run").mkdir()
    save_checkpoint(tmp_path / "run" / "model.npz", params, state)
    one_line_error(*call(["--run", tmp_path / "run", "--subjects", "S9"], capsys)[::2], "16 joints")


def test_dangling_latest_link(tmp_path, capsys):
    os.symlink(tmp_path / "removed-run", tmp_path / "latest")
    one_line_error(*call(["--run", tmp_path / "latest"], capsys)[::2], "dangling link")


@pytest.mark.skipif(backend.available, reason="a GPU is present")
def test_gpu_unavailable(setup, capsys):
    _, _, run = setup
    one_line_error(*call(["--run", run, "--subjects", "S9", "--device", "gpu"], capsys)[::2], "GPU path is unavailable")


def test_missing_data_file(setup, tmp_path, capsys):
    _, _, run = setup
    one_line_error(*call(["--run", run, "--data", tmp_path / "absent.h5"], capsys)[::2], "no such data file")


def test_hml_without_pretrain(setup, tmp_path, capsys):
    _, data, _ = setup
    run = make_run(tmp_path / "run", data, pretrain=False)
    one_line_error(*call(["--run", run, "--subjects", "S9", "--mode", "hml"], capsys)[::2], "pretrain_model.npz")


def test_subject_not_in_file(setup, capsys):
    _, _, run = setup
    one_line_error(*call(["--run", run, "--subjects", "S11"], capsys)[::2], "no subject S11")


def test_action_not_in_file(setup, capsys):
    _, _, run = setup
    one_line_error(*call(["--run", run, "--subjects", "S9", "--actions", "Sitting"], capsys)[::2], "no action")


def test_apf_starts(setup, capsys, tmp_path):
    # --apf-starts 2: the APF from the top-1 pose and the top-A pose nearest the target, the best
    # fit to the target kept (tests/apf), recorded in the JSON; more starts than A: one line
    _, _, run = setup
    for starts in (1, 2):
        path = tmp_path / f"s{starts}.json"
        code, _, err = call(["--run", run, "--subjects", "S9", "--mode", "apf", "--A", "3", "--json", path,
                             "--train-images", "0", "--no-progress", "--apf-starts", starts, *FAST_APF], capsys)
        assert code == 0, err
        (rec,) = json.loads(path.read_text())
        assert rec["context"]["apf"]["starts"] == starts and rec["n_frames"] == 24
    code, _, err = call(["--run", run, "--subjects", "S9", "--mode", "apf", "--A", "3", "--apf-starts", "4",
                         "--train-images", "0", "--no-progress", *FAST_APF], capsys)
    one_line_error(code, err, "more starts than the A = 3")


@pytest.mark.parametrize("argv, expected", [
    (["--mode", "max,fancy"], "unknown mode 'fancy'"),
    (["--subjects", "S3"], "unknown subject 'S3'"),
    (["--actions", "Dancing"], "unknown action 'Dancing'"),
    (["--A", "0"], "--A: expected a positive integer"),
    (["--sweep-A", "1,x"], "positive integer"),
    (["--sweep-A", "automatic"], "positive integer"),
    (["--export-topk", "0", "f.npz"], "K must be a positive integer"),
    (["--apf-stages", "legs"], "stages"),
    (["--apf-starts", "0"], "argument --apf-starts: expected a positive integer"),
    (["--device", "tpu"], "invalid choice"),
    (["--best-of", "1,0"], "positive integer"),
    (["--retrieval-mm", "-5"], "argument --retrieval-mm: expected a positive number"),
])
def test_bad_arguments_exit_2(argv, expected, capsys):
    code, _, err = call(argv, capsys)
    one_line_error(code, err, expected, want_code=2)


def test_stale_bank_cache_after_retraining(setup, tmp_path, capsys):
    # a run directory whose model is replaced by another (same shapes) must not reuse the cache
    _, data, run = setup
    run2 = tmp_path / "run"
    shutil.copytree(run, run2)
    first = tmp_path / "a.json"
    code, _, err = call(["--run", run2, "--subjects", "S9", "--mode", "max", "--json", first, "--train-images", "0",
                         "--no-progress"], capsys)
    assert code == 0, err
    make_run(run2, data, pretrain=False, seed=1)          # "retrained": new parameters, old cache beside
    second = tmp_path / "b.json"
    code, out, err = call(["--run", run2, "--subjects", "S9", "--mode", "max", "--json", second,
                           "--train-images", "0", "--no-progress"], capsys)
    assert code == 0, err
    assert "embeddings computed" in out
    # the reference: the same model evaluated without any cache
    third = tmp_path / "c.json"
    code, out, err = call(["--run", run2, "--subjects", "S9", "--mode", "max", "--json", third, "--no-cache",
                           "--train-images", "0", "--no-progress"], capsys)
    assert code == 0, err
    b, c = json.loads(second.read_text())[0], json.loads(third.read_text())[0]
    assert b["mpjpe_all_frames"] == c["mpjpe_all_frames"]


# ----------------------------------------------------------------------------- issue 13
def test_A_larger_than_the_bank_is_said_to_be_clipped(setup, capsys, tmp_path):
    _, _, run = setup
    path = tmp_path / "r.json"
    code, out, err = call(["--run", run, "--subjects", "S9", "--mode", "avg", "--A", "1000", "--sweep-A", "2,500",
                           "--json", path, "--train-images", "0", "--no-progress"], capsys)
    assert code == 0, err
    assert "A = 24 (--A 1000 clipped to the 24-pose bank)" in out and "(given)" not in out
    assert "note: --sweep-A 500 clipped to the 24-pose bank" in out
    assert json.loads(path.read_text())[0]["context"]["A_rule"] == "--A 1000 clipped to the 24-pose bank"


def test_pickled_model_is_not_loaded(tmp_path, capsys):
    import pickle
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.npz").write_bytes(pickle.dumps({"kind": "structnet"}))
    code, _, err = call(["--run", tmp_path / "run"], capsys)
    one_line_error(code, err, "a pickle, not an .npz archive")
    np.savez(tmp_path / "run" / "model.npz", a=np.array([{}], dtype=object))      # an object array inside
    code, _, err = call(["--run", tmp_path / "run"], capsys)
    one_line_error(code, err, "not a parameter file of this project (it holds Python objects")
    assert "unsafely" not in err


def test_output_write_failures_name_the_file(setup, capsys, tmp_path):
    _, _, run = setup
    (tmp_path / "file").write_text("")
    base = ["--run", run, "--subjects", "S9", "--mode", "max", "--train-images", "0", "--no-progress"]
    for argv, named in ((["--json", tmp_path / "file" / "r.json"], tmp_path / "file" / "r.json"),
                        (["--export-topk", "2", tmp_path / "file" / "k.npz"], tmp_path / "file" / "k.npz"),
                        (["--figures", tmp_path / "file" / "figs"], tmp_path / "file")):
        code, _, err = call(base + argv, capsys)
        one_line_error(code, err, str(named))
    code, _, err = call(base + ["--export-topk", "2", ""], capsys)
    one_line_error(code, err, "--export-topk: FILE must not be empty", want_code=2)


def test_vp3d_write_failure_names_the_file(setup, capsys, tmp_path):
    _, _, run = setup
    (tmp_path / "file").write_text("")
    code, _, err = call(["--run", run, "--subjects", "S9", "--mode", "max", "--train-images", "0", "--no-progress",
                         "--export-vp3d", tmp_path / "file" / "p.npz"], capsys)
    one_line_error(code, err, str(tmp_path / "file" / "p.npz"))

"""--export-bvh of run_eval.py and run_predict.py on a tiny dataset with a randomly initialised tiny
model: one BVH file per sequence, read back by pybvh, whose forward kinematics reproduces the
StructNet-Avg(A)-APF poses (the VideoPose3D export's, predictions.json's) within 0.01 mm; the
sequences' frame order and frame time; one-line errors."""
import json

import numpy as np
import pybvh
import pytest
from PIL import Image

import run_predict
from apf import bvh
from data.dataset import PoseDataset
from data.h36m import JOINT_NAMES
from data.vp3d import load_positions_3d, read_vp3d
from tests.apf.test_bvh import parsed_joints
from tests.data.conftest import write_tiny_dataset
from tests.test_run_eval import FAST_APF, call, make_run, one_line_error

# camera coordinates (x right, y down, z away) -> the files' X right, Y up, Z toward the camera
CAMERA_TO_FILE = np.diag([1.0, -1.0, -1.0])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("bvh")
    data = write_tiny_dataset(root / "tiny.h5", n_per=6, subjects=("S1", "S9"), actions=("Walking", "Eating"))
    run = make_run(root / "run", data, pretrain=False)
    return root, data, run


def test_run_eval_writes_one_file_per_sequence(setup, capsys, tmp_path):
    _, data, run = setup
    out, vp3d = tmp_path / "bvh", tmp_path / "p.npz"
    code, text, err = call(["--run", run, "--subjects", "S9", "--mode", "avg,apf", *FAST_APF, "--train-images", "0",
                            "--best-of", "", "--export-bvh", out, "--export-vp3d", vp3d, "--no-progress"], capsys)
    assert code == 0, err
    assert "wrote 4 BVH files" in text and "unevenly" not in text
    doc = json.loads((out / "sequences.json").read_text())
    assert doc["euler_order"] == "YZX" and doc["poses"].endswith("-APF") and "zero" in doc["root_translation"]
    assert doc["joints"]["RFoot"] == "End Site of RKnee" and len(doc["joints"]) == 17
    seqs = {(s["action"], s["camera"]): s for s in doc["sequences"]}
    assert sorted(p.name for p in out.iterdir()) == sorted([s["file"] for s in doc["sequences"]] + ["sequences.json"])
    assert set(seqs) == {(a, c) for a in ("Walking", "Eating") for c in ("54138969", "55011271")}
    apf, raw = load_positions_3d(vp3d)["S9"], read_vp3d(vp3d)      # metres, per camera in frame order
    assert str(raw["method"]).endswith("-APF")
    ds = PoseDataset(data)
    for action, views in apf.items():
        for cam, poses, frames in zip(raw["cameras"].item()["S9"][action], views, raw["frames"].item()["S9"][action]):
            s = seqs[(action, cam)]
            assert s["file"] == f"S9_{action}_1_{cam}.bvh" and s["frames"] == list(frames) == [0, 5, 10, 15, 20, 25]
            assert s["fps"] == pytest.approx(10.0) and s["evenly_spaced"] and s["max_joint_error_mm"] < 1e-3
            meta = ds.metadata(s["rows"])
            assert set(meta["camera"]) == {cam} and list(meta["frame"]) == s["frames"]
            b = pybvh.read_bvh_file(str(out / s["file"]), world_up="+y")
            assert b.frame_count == 6 and b.frame_time == pytest.approx(0.1)
            assert np.all(b.root_pos == 0)
            want = (poses * 1000.0) @ CAMERA_TO_FILE.T
            err_mm = np.abs(parsed_joints(b) - want).max()
            assert err_mm < 0.01, err_mm
    ds.close()


def test_uneven_frames_and_errors(setup, capsys, tmp_path):
    _, _, run = setup
    out = tmp_path / "bvh"
    code, text, err = call(["--run", run, "--subjects", "S9", "--actions", "Walking", "--mode", "apf", *FAST_APF,
                            "--max-images", "9", "--train-images", "0", "--best-of", "", "--export-bvh", out,
                            "--no-progress"], capsys)
    assert code == 0, err
    assert "have unevenly spaced frames" in text
    doc = json.loads((out / "sequences.json").read_text())
    for s in doc["sequences"]:
        f = s["frames"]
        assert f == sorted(f) and s["fps"] == pytest.approx(50 * (len(f) - 1) / (f[-1] - f[0]))
    # the apf mode is needed; an unwritable folder is found before the evaluation
    code, _, err = call(["--run", run, "--mode", "max,avg", "--export-bvh", out], capsys)
    assert code == 2 and "--export-bvh" in err and "add apf to --mode" in err
    (tmp_path / "file").write_text("")
    code, text, err = call(["--run", run, "--mode", "apf", "--export-bvh", tmp_path / "file" / "d", "--no-progress"],
                           capsys)
    one_line_error(code, err, str(tmp_path / "file" / "d"))
    assert "evaluating" not in text and "Protocol" not in text


def test_run_predict_writes_a_file_per_folder(setup, capsys, tmp_path):
    root, data, _ = setup
    run = str(root / "run")
    ds = PoseDataset(data)
    rows = ds.select(subjects=["S9"])[:4]
    folder = tmp_path / "clip.v1"
    folder.mkdir()
    images = ds.read_images(rows)
    for k, im in enumerate(images[:3]):
        Image.fromarray(im).save(folder / f"frame{k:02d}.png")
    loose = tmp_path / "single.png"
    Image.fromarray(images[3]).save(loose)
    ds.close()
    out, pred = tmp_path / "bvh", tmp_path / "pred"
    code = run_predict.main([str(loose), str(folder), "--run", run, "--out", str(pred), "--export-bvh", str(out),
                             "--bvh-fps", "25"])
    _, err = capsys.readouterr()
    assert code == 0, err
    res = json.loads((pred / "predictions.json").read_text())
    apf_name = next(m for m in res["images"][0]["poses"] if m.endswith("-APF"))
    by_file = {r["file"]: np.asarray(r["poses"][apf_name]) for r in res["images"]}
    doc = json.loads((out / "sequences.json").read_text())
    assert [s["file"] for s in doc["sequences"]] == ["clip.v1.bvh", "images.bvh"]
    assert doc["sequences"][0]["images"] == [str(folder / f"frame{k:02d}.png") for k in range(3)]
    assert doc["sequences"][1]["images"] == [str(loose)]
    for s in doc["sequences"]:
        b = pybvh.read_bvh_file(str(out / s["file"]), world_up="+y")
        assert b.frame_count == len(s["images"]) and b.frame_time == pytest.approx(0.04)
        want = np.stack([by_file[f] for f in s["images"]]) @ CAMERA_TO_FILE.T
        assert np.abs(parsed_joints(b) - want).max() < 0.01
    for argv, words in (([str(folder), "--run", run, "--no-apf", "--export-bvh", str(out)], "--no-apf"),
                        ([str(folder), "--run", run, "--export-bvh", str(out), "--bvh-fps", "0"], "--bvh-fps")):
        with pytest.raises(SystemExit) as info:
            run_predict.main(argv)
        assert info.value.code == 2 and words in capsys.readouterr().err


def test_joint_table_matches_the_writer():
    """The test's own joint naming (tests/apf/test_bvh.py) is the documented one."""
    from tests.apf.test_bvh import NODE_OF
    for j in JOINT_NAMES:
        kind, node = bvh.JOINT_NODE[j]
        assert NODE_OF[j] == (node if kind == "joint" else "EndSite" + node)

"""run_predict.py on a tiny trained run: the dataset's own crops, written as PNG files with the
whole image as the box, give evaluation's StructNet-Max (the same crop and preprocessing); the
JSON schema; the pictures; one-line errors for bad input."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import run_predict
from data.dataset import PoseDataset
from data.loader import BatchLoader, eval_images
from structlearn.evaluate import Evaluator, default_A, method_name
from tests.data.conftest import write_tiny_dataset
from tests.test_run_eval import make_run
from tests.cli import run_main


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    data = write_tiny_dataset(root / "tiny.h5", n_per=6, subjects=("S1", "S9"), actions=("Walking", "Eating"))
    run = make_run(root / "run", data, pretrain=False)
    ds = PoseDataset(data)
    rows = ds.select(subjects=["S9"])[:5]
    folder = root / "images"
    folder.mkdir()
    for r, im in zip(rows, ds.read_images(rows)):
        Image.fromarray(im).save(folder / f"row{r:03d}.png")
    ds.close()
    return root, data, run, rows, folder


def call(argv, capsys):
    return run_main(run_predict.main, argv, capsys)


def one_line_error(code, err, *expected):
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("run_predict.py: error:"), lines
    for e in expected:
        assert e in lines[0], lines


def test_preprocessing_is_the_loaders(setup):
    _, data, run, rows, _ = setup
    ev = Evaluator(run, log=lambda *a: None)
    m = ev.model
    batch = BatchLoader(ev.dataset, rows, 8, train=False, stats=m.stats, crop=m.net.cfg.input_size,
                        downsample=m.net.cfg.downsample).make_batch(0, 0)
    x = eval_images(ev.dataset.read_images(rows), m.stats, m.net.cfg.input_size, m.net.cfg.downsample)
    np.testing.assert_array_equal(x, batch.images)


def test_stored_crops_give_evaluations_max(setup, capsys, tmp_path):
    _, data, run, rows, folder = setup
    out = tmp_path / "pred"
    code, _, err = call([folder, "--run", run, "--out", out, "--top-k", 3], capsys)
    assert code == 0, err
    res = json.loads((out / "predictions.json").read_text())
    ev = Evaluator(run, log=lambda *a: None)
    A = default_A(ev.bank_size)
    evaluated = ev.run(rows, ("max", "avg"), A, keep_rows=rows, progress=False)
    assert res["A"] == A and res["bank_size"] == ev.bank_size and res["top_k"] == 3
    assert "S1" in res["apf_skeleton"] and len(res["joints"]) == 17
    assert [os.path.basename(r["file"]) for r in res["images"]] == [f"row{r:03d}.png" for r in rows]
    for i, rec in enumerate(res["images"]):
        assert rec["box"] == [0.0, 0.0, 128.0, 128.0] and rec["crop_box"] == [0, 0, 128]
        assert rec["box_source"] == "whole image"
        assert set(rec["poses"]) == {method_name(m, A) for m in ("max", "avg", "apf", "pred")}
        for pose in rec["poses"].values():
            assert np.asarray(pose).shape == (17, 3)
        np.testing.assert_array_equal(np.asarray(rec["poses"]["StructNet-Max"], np.float32), evaluated.kept["max"][i])
        np.testing.assert_allclose(rec["poses"][method_name("avg", A)], evaluated.kept["avg"][i], atol=1e-4)
        top = rec["top_k"]
        assert len(top["bank_index"]) == len(top["scores"]) == 3 and np.asarray(top["poses"]).shape == (3, 17, 3)
        assert top["scores"] == sorted(top["scores"], reverse=True)
        np.testing.assert_array_equal(np.asarray(top["poses"][0], np.float32), evaluated.kept["max"][i])
        assert os.path.getsize(rec["picture"]) > 0 and rec["picture"].endswith(".png")


def test_boxes_file_and_no_apf(setup, capsys, tmp_path):
    _, _, run, rows, folder = setup
    name = f"row{rows[0]:03d}.png"
    boxes = tmp_path / "b.csv"
    boxes.write_text(f"name,x,y,w,h\n{name},10,20,60,90\n")
    code, _, err = call([folder / name, "--run", run, "--out", tmp_path, "--boxes", boxes, "--no-apf"], capsys)
    assert code == 0, err
    rec = json.loads((tmp_path / "predictions.json").read_text())["images"][0]
    # the square of side max(w, h) = 90 centred on the box: x0 = 10 + 30 - 45
    assert rec["box_source"] == "file" and rec["crop_box"] == [-5, 20, 90]
    assert not any(k.endswith("-APF") for k in rec["poses"])


def test_bad_input(setup, capsys, tmp_path):
    _, _, run, rows, folder = setup
    img = folder / f"row{rows[0]:03d}.png"
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    one_line_error(*call([bad, "--run", run, "--out", tmp_path], capsys)[::2], str(bad), "cannot read")
    one_line_error(*call([tmp_path / "nope.png", "--run", run], capsys)[::2], "nope.png")
    for box, words in (([500, 0, 10, 10], "not inside"), ([0, 0, 0, 10], "non-positive")):
        js = tmp_path / "boxes.json"
        js.write_text(json.dumps({img.name: box}))
        one_line_error(*call([img, "--run", run, "--boxes", js], capsys)[::2], str(img), str([float(v) for v in box]),
                       words)
    js.write_text("{not json")
    one_line_error(*call([img, "--run", run, "--boxes", js], capsys)[::2], str(js), "JSON")
    js.write_text(json.dumps({"other.png": [0, 0, 5, 5]}))
    one_line_error(*call([img, "--run", run, "--boxes", js], capsys)[::2], "'other.png'", "not among")
    cs = tmp_path / "boxes.csv"
    cs.write_text(f"{img.name},1,2,3\n")
    one_line_error(*call([img, "--run", run, "--boxes", cs], capsys)[::2], str(cs), "row 1")
    one_line_error(*call([img, "--run", tmp_path / "norun"], capsys)[::2], "norun")
    code, _, err = call([img, "--run", run, "--top-k", "0"], capsys)
    assert code == 2 and "--top-k" in err and "positive integer" in err
    code, _, err = call([img, "--run", run, "--A", "x"], capsys)
    assert code == 2 and "--A" in err

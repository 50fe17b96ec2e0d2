"""VideoPose3D's positions_3d layout: writing per-camera sequences, reading them back (and
VideoPose3D's own world-coordinate file), never running a foreign pickle."""
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from data import h36m
from data.vp3d import action_key, load_positions_3d, read_vp3d, save_positions_3d


def _meta():
    """Rows shuffled across two subjects, sub-actions and cameras; frames out of order."""
    rows = [(s, a, sub, c, f) for s in ("S11", "S9") for a, sub in (("Walking", 1), ("Walking", 2), ("Eating", 1))
            for c in ("55011271", "54138969") for f in (10, 0, 5)]
    order = np.random.default_rng(0).permutation(len(rows))
    cols = list(zip(*[rows[i] for i in order]))
    return {"subject": np.array(cols[0], dtype=object), "action": np.array(cols[1], dtype=object),
            "subaction": np.array(cols[2]), "camera": np.array(cols[3], dtype=object), "frame": np.array(cols[4])}


def test_round_trip_layout_and_vp3d_reading(tmp_path):
    meta = _meta()
    poses = np.random.default_rng(1).normal(0, 300, (len(meta["frame"]), 17, 3)).astype(np.float32)
    path = tmp_path / "preds.npz"
    save_positions_3d(path, poses, meta, extra={"positions_3d_gt": poses + 1}, method="StructNet-Max")
    got = load_positions_3d(path)
    assert list(got) == ["S9", "S11"]                                   # Human3.6M order
    assert list(got["S9"]) == ["Eating", "Walking", "Walking 1"]       # sub-action 2 -> "Walking 1"
    raw = read_vp3d(path)
    cams, frames = raw["cameras"].item(), raw["frames"].item()
    for s in ("S9", "S11"):
        for key in ("Eating", "Walking", "Walking 1"):
            assert cams[s][key] == ["54138969", "55011271"]
            for c, arr, fr in zip(cams[s][key], got[s][key], frames[s][key]):
                np.testing.assert_array_equal(fr, [0, 5, 10])           # frame order
                rows = [np.flatnonzero((meta["subject"] == s) & (meta["camera"] == c) & (meta["frame"] == f)
                                       & np.array([action_key(a, b) == key for a, b in
                                                   zip(meta["action"], meta["subaction"])]))[0] for f in fr]
                assert arr.shape == (3, 17, 3) and arr.dtype == np.float32
                np.testing.assert_allclose(arr, poses[rows] / 1000.0, rtol=1e-6)   # metres
    assert load_positions_3d(path, "positions_3d_gt")["S9"]["Eating"][0][0, 0, 0] == pytest.approx(
        got["S9"]["Eating"][0][0, 0, 0] + 0.001, abs=1e-6)
    assert list(raw["joint_names"]) == list(h36m.JOINT_NAMES) and str(raw["units"]) == "m"
    assert str(raw["method"]) == "StructNet-Max"
    # VideoPose3D's own way of reading it
    z = np.load(path, allow_pickle=True)
    np.testing.assert_array_equal(z["positions_3d"].item()["S11"]["Walking 1"][1], got["S11"]["Walking 1"][1])


def test_reads_videopose3d_world_file_with_32_joints(tmp_path):
    world = np.random.default_rng(2).normal(0, 1, (7, 32, 3)).astype(np.float32)
    path = tmp_path / "data_3d_h36m.npz"
    np.savez_compressed(path, positions_3d={"S1": {"Directions 1": world}})   # as prepare_data_h36m.py writes it
    got = load_positions_3d(path)
    assert list(got["S1"]) == ["Directions 1"] and len(got["S1"]["Directions 1"]) == 1
    np.testing.assert_array_equal(got["S1"]["Directions 1"][0], world[:, list(h36m.H36M32_TO_17)])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo owned",))


def test_foreign_pickles_and_bad_files_are_refused(tmp_path):
    evil = tmp_path / "evil.npz"
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": ()})
    pickle.dump({"S1": {"Walking": _Evil()}}, buf, protocol=3)
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("positions_3d.npy", buf.getvalue())
    with pytest.raises(ValueError, match="refused to load .*system"):
        load_positions_3d(evil)
    with pytest.raises(ValueError, match="no such file"):
        load_positions_3d(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not an .npz"):
        load_positions_3d(tmp_path / "text.npz")
    np.savez(tmp_path / "other.npz", poses=np.zeros((2, 17, 3)))
    with pytest.raises(ValueError, match="no 'positions_3d'"):
        load_positions_3d(tmp_path / "other.npz")
    np.savez(tmp_path / "bad.npz", positions_3d={"S1": {"Walking": [np.zeros((4, 16, 3))]}})
    with pytest.raises(ValueError, match=r"\(frames, 17 or 32, 3\)"):
        load_positions_3d(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="poses must be"):
        save_positions_3d(tmp_path / "x.npz", np.zeros((3, 16, 3)), _meta())

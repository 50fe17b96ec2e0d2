"""prepare_h36m and the release's traps, on tiny fake release trees: the S9 sequences offset from
their videos, videos longer than their pose files, the S11 Directions video that decodes in later
releases, metadata.xml as the source of the cameras, and the summary that lists every skip."""
import json
import os

import h5py
import numpy as np
import pytest

from data import h36m, h36m_metadata, prepare_h36m
from data.dataset import DatasetError, PoseDataset
from tests.data.test_prepare_h36m import fake_poses, write_cdf, write_images, write_video

pytest.importorskip("av")
pytest.importorskip("cdflib.cdfwrite")


def make_tree(root, sequences, seed=0):
    """sequences: (subject, stem, poses, frames, kind) with kind "video" / "images" / None."""
    rng = np.random.default_rng(seed)
    for subject, stem, n_poses, frames, kind in sequences:
        cam = stem.rsplit(".", 1)[1]
        write_cdf(os.path.join(root, subject, "MyPoseFeatures", "D3_Positions_mono", stem + ".cdf"),
                  fake_poses(rng, n_poses))
        if kind == "video":
            write_video(os.path.join(root, subject, "Videos", stem + ".mp4"), cam, frames)
        elif kind == "images":
            write_images(os.path.join(root, subject, "Images", stem), cam, frames)
    return str(root)


S9_TREE = [
    ("S9", "Greeting.54138969", 4, 4, "video"),          # offset (metadata (5, 2))
    ("S9", "Greeting 1.54138969", 4, 4, "video"),
    ("S9", "SittingDown 1.55011271", 4, 4, "video"),     # offset (10, 2)
    ("S9", "Waiting 1.58860488", 4, 4, "video"),         # offset (13, 1)
    ("S9", "Waiting.58860488", 4, 4, "video"),
    ("S9", "Walking.60457274", 5, 7, "video"),           # a video longer than its pose file
    ("S9", "Posing.55011271", 4, 6, "images"),           # extracted frames: more files than poses
]


@pytest.fixture(scope="module")
def s9_root(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("s9"), S9_TREE)


def _rows(path):
    with PoseDataset(path) as ds:
        meta = ds.metadata()
        return {(a, int(sa), c): sorted(meta["frame"][(meta["action"] == a) & (meta["subaction"] == sa)
                                                      & (meta["camera"] == c)].tolist())
                for a, sa, c in set(zip(meta["action"], meta["subaction"], meta["camera"]))}


def test_offset_names_and_this_scripts_subaction_numbers(s9_root):
    # metadata.xml's numbering (MotionBERT's, MMPose's) -> the files, -> this script's numbering
    assert prepare_h36m.offset_sequences() == {("S9", "Greeting"), ("S9", "SittingDown 1"), ("S9", "Waiting 1")}
    found = {(s.raw_action, s.camera): s.subaction for s in prepare_h36m.find_sequences(s9_root, ["S9"])}
    assert found[("Greeting", "54138969")] == 1 and found[("Greeting 1", "54138969")] == 2
    assert found[("Waiting 1", "58860488")] == 2 and found[("Waiting", "58860488")] == 1


def test_s9_offset_skipped_by_default_longer_videos_counted(s9_root, tmp_path):
    out = str(tmp_path / "s9.h5")
    summary = prepare_h36m.prepare(s9_root, out, subjects="S9", frame_step=2, progress=False, bank_rate_hz=25)
    offset = sorted(s["sequence"] for s in summary["skipped"] if s["kind"] == "annotation_offset")
    assert offset == ["S9/Greeting.54138969", "S9/SittingDown 1.55011271", "S9/Waiting 1.58860488"]
    assert summary["skip_counts"] == {"annotation_offset": 3}
    rows = _rows(out)
    assert set(rows) == {("Greeting", 2, "54138969"), ("Waiting", 1, "58860488"), ("Walking", 1, "60457274"),
                         ("Posing", 1, "55011271")}
    # the longer video and folder give the pose file's frames, and are listed with their counts
    assert rows[("Walking", 1, "60457274")] == [0, 2, 4] and rows[("Posing", 1, "55011271")] == [0, 2]
    longer = {v["sequence"]: v for v in summary["longer_videos"]}
    assert set(longer) == {"S9/Walking.60457274", "S9/Posing.55011271"}
    assert longer["S9/Posing.55011271"] == {"sequence": "S9/Posing.55011271", "frames": 6, "poses": 4, "used": 4}
    assert longer["S9/Walking.60457274"]["poses"] == 5 and longer["S9/Walking.60457274"]["frames"] in (7, None)
    assert summary["shorter_videos"] == []
    # the summary is the file's attribute
    with h5py.File(out, "r") as f:
        assert json.loads(f.attrs["preparation"]) == json.loads(json.dumps(summary))
    with PoseDataset(out) as ds:      # and the reader accepts the file with it
        assert ds.n == 2 + 2 + 3 + 2


def test_s9_offset_kept_with_the_flag(s9_root, tmp_path):
    out = str(tmp_path / "keep.h5")
    summary = prepare_h36m.prepare(s9_root, out, subjects="S9", frame_step=2, progress=False, bank_rate_hz=None,
                                   keep_offset_s9=True)
    assert summary["skipped"] == [] and summary["skip_counts"] == {} and summary["keep_offset_s9"]
    rows = _rows(out)
    assert ("Greeting", 1, "54138969") in rows and ("SittingDown", 1, "55011271") in rows
    assert ("Waiting", 2, "58860488") in rows


@pytest.fixture(scope="module")
def s11_root(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("s11"), [
        ("S11", "Directions.54138969", 4, 4, "video"),     # the replaced video: it decodes
        ("S11", "Directions 1.54138969", 4, 4, "video"),
        ("S11", "Directions.55011271", 4, 4, "video"),
    ])


def test_s11_directions_kept_when_it_decodes_skipped_by_the_paper_flag(s11_root, tmp_path):
    summary = prepare_h36m.prepare(s11_root, str(tmp_path / "a.h5"), subjects="S11", frame_step=2,
                                   progress=False, bank_rate_hz=None)
    assert summary["skipped"] == [] and summary["sequences"] == 3
    summary = prepare_h36m.prepare(s11_root, str(tmp_path / "b.h5"), subjects="S11", frame_step=2,
                                   progress=False, bank_rate_hz=None, paper_exclusions=True)
    assert [(s["sequence"], s["kind"]) for s in summary["skipped"]] == [("S11/Directions.54138969",
                                                                          "paper_exclusion")]
    assert set(_rows(str(tmp_path / "b.h5"))) == {("Directions", 2, "54138969"), ("Directions", 1, "55011271")}


# ---------------------------------------------------------------- metadata.xml
S9_MAPPING = {"S9": {("5", "1"): "Greeting 1", ("5", "2"): "Greeting", ("10", "1"): "SittingDown",
                     ("10", "2"): "SittingDown 1", ("13", "1"): "Waiting 1", ("13", "2"): "Waiting"}}


def test_metadata_reader_round_trip(tmp_path):
    path = h36m_metadata.write_metadata(tmp_path / "metadata.xml", mapping=S9_MAPPING)
    meta = h36m_metadata.read_metadata(path)
    assert meta.camera_ids == h36m.CAMERA_IDS
    for cid in h36m.CAMERA_IDS:
        assert meta.intrinsics[cid].to_dict() == h36m.CAMERAS[cid].to_dict()
        for s in h36m.ALL_SUBJECTS:
            R, T = meta.extrinsics[(s, cid)]
            R0, T0 = h36m.extrinsics(s, cid)
            np.testing.assert_allclose(R, R0, atol=1e-12)
            np.testing.assert_array_equal(T, T0)
    assert h36m_metadata.compare(meta) == []
    assert meta.file_prefix("S9", 13, 1) == "Waiting 1" and meta.file_prefix("S9", 2, 1) is None
    # the angle convention: Rx(a) Ry(b) Rz(c), world to camera
    a = np.array([0.3, -0.2, 1.1])
    np.testing.assert_allclose(h36m_metadata.rotation_to_angles(h36m_metadata.angles_to_rotation(a)), a)
    R = h36m_metadata.angles_to_rotation([0.0, 0.0, np.pi / 2])
    np.testing.assert_allclose(R @ [1.0, 0, 0], [0, 1.0, 0], atol=1e-15)


def test_metadata_differences_are_listed_and_gross_ones_refused(tmp_path, s9_root):
    R0, T0 = h36m.extrinsics("S9", "54138969")
    turn = h36m_metadata.angles_to_rotation([np.radians(0.05), 0, 0])
    small = h36m_metadata.write_metadata(tmp_path / "small.xml", extrinsics={("S9", "54138969"): (turn @ R0, T0)})
    diffs = h36m_metadata.compare(h36m_metadata.read_metadata(small))
    assert [(d["camera"], d["subject"], d["what"]) for d in diffs] == [("54138969", "S9", "rotation_deg")]
    assert diffs[0]["difference"] == pytest.approx(0.05, rel=1e-6)
    out = str(tmp_path / "m.h5")
    summary = prepare_h36m.prepare(s9_root, out, subjects="S9", frame_step=4, progress=False, bank_rate_hz=None,
                                   metadata=small)
    assert summary["cameras"]["source"] == os.path.abspath(small) and len(summary["cameras"]["differences"]) == 1
    with PoseDataset(out) as ds:
        np.testing.assert_allclose(ds.camera_info["54138969"]["extrinsics"]["S9"]["R"], turn @ R0, atol=1e-12)

    big = h36m_metadata.write_metadata(tmp_path / "big.xml",
                                       extrinsics={("S9", "54138969"): (R0, T0 + [0, 0, 500.0])})
    with pytest.raises(DatasetError, match=r"big.xml: field 'w0': camera 54138969, subject S9: centre_mm differs") as e:
        prepare_h36m.prepare(s9_root, str(tmp_path / "x.h5"), subjects="S9", progress=False, metadata=big)
    assert "\n" not in str(e.value) and not os.path.exists(tmp_path / "x.h5")


def test_metadata_table_renames_the_offset_sequences(tmp_path, caplog):
    other = {"S9": {**S9_MAPPING["S9"], ("5", "2"): "Greeting 2"}}
    meta = h36m_metadata.read_metadata(h36m_metadata.write_metadata(tmp_path / "m.xml", mapping=other))
    assert ("S9", "Greeting 2") in prepare_h36m.offset_sequences(meta)
    assert any("Greeting 2" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("content, field", [
    ("not xml at all <", "not a valid XML file"),
    ("<h36m><mapping/></h36m>", "field 'w0': missing"),
    ("<h36m><w0>[1 2 3]</w0></h36m>", "field 'w0': expected 300 numbers"),
    ("<h36m><w0>[" + "1 " * 299 + "x]</w0></h36m>", "field 'w0': expected numbers, got 'x'"),
    ("<h36m><w0>[" + "nan " * 300 + "]</w0></h36m>", "field 'w0': expected finite numbers"),
    ("<h36m><dbcameras><index2id><id>1</id></index2id></dbcameras><w0>[" + "1 " * 300 + "]</w0></h36m>",
     "field 'dbcameras/index2id'"),
])
def test_bad_metadata_is_one_line(tmp_path, content, field):
    path = tmp_path / "metadata.xml"
    path.write_text(content)
    with pytest.raises(DatasetError, match=field) as e:
        h36m_metadata.read_metadata(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_cli_summary_printed_stored_and_written(s9_root, tmp_path, capsys):
    out, js = str(tmp_path / "cli.h5"), str(tmp_path / "summary.json")
    assert prepare_h36m.main(["--root", s9_root, "--out", out, "--subjects", "S9", "--frame-step", "5",
                              "--summary", js]) == 0
    printed = capsys.readouterr().out
    assert "skipped 3 x S9 annotation offset" in printed and "S9/Waiting 1.58860488" in printed
    assert "2 videos or Images folders with more frames than the pose file" in printed
    assert "S9/Posing.55011271: 6 frames, 4 poses" in printed
    with open(js) as f, h5py.File(out, "r") as h:
        assert json.load(f) == json.loads(h.attrs["preparation"])
    bad = tmp_path / "bad.xml"
    bad.write_text("<h36m/>")
    assert prepare_h36m.main(["--root", s9_root, "--out", out + "2", "--subjects", "S9", "--metadata", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {bad}: field 'w0': missing (the release's calibration vector)"]
    with pytest.raises(SystemExit) as e:
        prepare_h36m.main(["--root", s9_root, "--out", out, "--metadata", str(tmp_path / "none.xml")])
    assert e.value.code == 2


def test_writer_info_attribute(tmp_path):
    from data.dataset import DatasetWriter
    path = str(tmp_path / "info.h5")
    with DatasetWriter(path, source="h36m") as w:
        w.set_tpose("S1", np.zeros((17, 3)))
        w.append(np.zeros((1, 128, 128, 3), np.uint8), np.zeros((1, 17, 3)) + [0, 0, 4500], "S1", "Walking", 1,
                 "54138969", [0])
        w.set_info("preparation", {"skipped": [], "n": 1})
        with pytest.raises(ValueError, match="'cameras' is an attribute of the format"):
            w.set_info("cameras", {})
    with h5py.File(path, "r") as f:
        assert json.loads(f.attrs["preparation"]) == {"n": 1, "skipped": []}
    with PoseDataset(path) as ds:
        assert ds.n == 1

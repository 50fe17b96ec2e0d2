"""prepare_h36m on a tiny fake release built here in the release's layout."""
import logging
import os

import numpy as np
import pytest

from data import h36m, prepare_h36m
from data import skeleton as sk
from data.dataset import PoseDataset

av = pytest.importorskip("av")
cdfwrite = pytest.importorskip("cdflib.cdfwrite")


def gradient_frame(width, height, index):
    """Red encodes x / 4, green y / 4, blue the frame index * 40: crops reveal where they came from."""
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 0] = (np.arange(width) // 4).clip(0, 255)[None, :]
    img[..., 1] = (np.arange(height) // 4).clip(0, 255)[:, None]
    img[..., 2] = index * 40
    return img


def fake_poses(rng, n):
    """(n, 32, 3) mocap-like joints ~4.5 m in front of the camera, with a fixed skeleton."""
    skel = sk.Skeleton.from_height(1700)
    angles = sk.clip_angles(rng.normal(0, 0.3, (n, sk.N_ANGLES)))
    angles[:, :3] = [np.pi / 2 + 0.2, 0, 0]           # stand upright in camera axes (y down)
    joints17 = skel.forward(angles) + rng.normal(0, 40, (n, 1, 3)) + [0, 100, 4500]
    full = rng.normal(0, 500, (n, 32, 3)) + [0, 0, 4500]  # the 15 unused joints: noise
    full[:, list(h36m.H36M32_TO_17)] = joints17
    return full


def write_cdf(path, poses32):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = poses32.reshape(1, len(poses32), 96).astype(np.float32)
    cdf = cdfwrite.CDF(path, cdf_spec={"Majority": "Row_major"}, delete=True)
    cdf.write_var({"Variable": "Pose", "Data_Type": cdfwrite.CDF.CDF_FLOAT, "Num_Elements": 1,
                   "Rec_Vary": True, "Dim_Sizes": list(data.shape[1:])}, var_attrs={}, var_data=data)
    cdf.close()


def write_video(path, camera, n_frames):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cam = h36m.CAMERAS[camera]
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=50)
        stream.width, stream.height, stream.pix_fmt = cam.width, cam.height, "yuv420p"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(gradient_frame(cam.width, cam.height, i), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_images(folder, camera, n_frames):
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    cam = h36m.CAMERAS[camera]
    for i in range(n_frames):
        Image.fromarray(gradient_frame(cam.width, cam.height, i)).save(os.path.join(folder, f"frame_{i + 1:06d}.png"))


def write_broken_video(path):
    """An .mp4 that PyAV cannot open: the corrupt video of early releases."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("h36m"))
    rng = np.random.default_rng(0)
    poses = {}

    def sequence(subject, stem, n_poses, frames=None, kind="video"):
        cam = stem.rsplit(".", 1)[1]
        poses[(subject, stem)] = fake_poses(rng, n_poses)
        write_cdf(os.path.join(root, subject, "MyPoseFeatures", "D3_Positions_mono", stem + ".cdf"),
                  poses[(subject, stem)])
        if kind == "video":
            write_video(os.path.join(root, subject, "Videos", stem + ".mp4"), cam, frames or n_poses)
        elif kind == "images":
            write_images(os.path.join(root, subject, "Images", stem), cam, frames or n_poses)

    sequence("S1", "Walking 1.54138969", 6)
    sequence("S1", "Walking.54138969", 3)                       # the other sub-action (no number)
    sequence("S1", "TakingPhoto.55011271", 5, kind="images")    # S1's raw alias, extracted frames
    sequence("S1", "_ALL 1.54138969", 2, kind=None)             # not an action: skipped
    sequence("S11", "Directions.54138969", 4, kind=None)        # the known corrupt video: does not decode
    write_broken_video(os.path.join(root, "S11", "Videos", "Directions.54138969.mp4"))
    sequence("S11", "Directions 1.54138969", 4)                 # its other sub-action: fine
    sequence("S11", "WalkingDog 1.58860488", 6, frames=3)       # video shorter than the poses
    sequence("S11", "Eating.60457274", 4, kind=None)            # no video at all
    broken = os.path.join(root, "S11", "MyPoseFeatures", "D3_Positions_mono", "Smoking.60457274.cdf")
    with open(broken, "wb") as f:                               # a damaged pose file
        f.write(b"not a CDF file")
    return root, poses


@pytest.fixture(scope="module")
def prepared(release, tmp_path_factory):
    root, poses = release
    out = str(tmp_path_factory.mktemp("out") / "h36m.h5")
    # Images at every 2nd frame; the bank at 25 Hz, i.e. every 2nd frame too.
    summary = prepare_h36m.prepare(root, out, subjects=["S1", "S11"], frame_step=2, progress=False, bank_rate_hz=25)
    return out, summary, poses


def test_sequences_found_with_aliases_and_subactions(release):
    root, _ = release
    seqs = prepare_h36m.find_sequences(root, ["S1", "S11"])
    found = {(s.subject, s.raw_action, s.camera): (s.action, s.subaction) for s in seqs}
    assert found[("S1", "Walking", "54138969")] == ("Walking", 1)
    assert found[("S1", "Walking 1", "54138969")] == ("Walking", 2)
    assert found[("S1", "TakingPhoto", "55011271")] == ("Photo", 1)
    assert found[("S11", "WalkingDog 1", "58860488")] == ("WalkDog", 1)
    assert not any(raw.startswith("_ALL") for _, raw, _ in found)


def test_rows_poses_and_skips(prepared, caplog):
    out, summary, poses = prepared
    kinds = {s["sequence"]: s["kind"] for s in summary["skipped"]}
    assert kinds == {"S1/_ALL 1.54138969": "not_an_action", "S11/Directions.54138969": "undecodable_video",
                     "S11/Eating.60457274": "no_frames_source", "S11/Smoking.60457274": "unreadable_poses"}
    assert summary["skip_counts"] == {"not_an_action": 1, "unreadable_poses": 1, "no_frames_source": 1,
                                      "undecodable_video": 1}
    assert "corrupt in early releases" in next(s["reason"] for s in summary["skipped"]
                                               if s["kind"] == "undecodable_video")
    assert [v["sequence"] for v in summary["shorter_videos"]] == ["S11/WalkingDog 1.58860488"]
    assert summary["longer_videos"] == [] and summary["cameras"] == {"source": "built-in", "differences": []}
    with PoseDataset(out) as ds:
        assert ds.source == "h36m" and ds.subjects == ("S1", "S11")
        meta = ds.metadata()
        # the undecodable Directions is skipped, its decodable other sub-action kept
        assert set(meta["subaction"][meta["action"] == "Directions"]) == {2}
        rows = {}
        for i in range(ds.n):
            rows.setdefault((meta["subject"][i], meta["action"][i], meta["subaction"][i]), []).append(i)
        assert sorted(meta["frame"][rows[("S1", "Walking", 2)]]) == [0, 2, 4]
        assert sorted(meta["frame"][rows[("S1", "Walking", 1)]]) == [0, 2]
        assert sorted(meta["frame"][rows[("S1", "Photo", 1)]]) == [0, 2, 4]
        # Only the 3 frames of the short video exist: 0 and 2 are kept, 4 is missing.
        assert sorted(meta["frame"][rows[("S11", "WalkDog", 1)]]) == [0, 2]
        for i in rows[("S1", "Walking", 2)]:
            expected = poses[("S1", "Walking 1.54138969")][meta["frame"][i]][list(h36m.H36M32_TO_17)]
            np.testing.assert_allclose(ds.poses([i])[0], expected, rtol=1e-6, atol=1e-3)
        # T poses: the median bone lengths of the subject's frames.
        s1 = np.concatenate([p[:, list(h36m.H36M32_TO_17)] for k, p in poses.items()
                             if k[0] == "S1" and "_ALL" not in k[1]])
        np.testing.assert_allclose(sk.bone_lengths(ds.tpose("S1")),
                                   np.median(sk.bone_lengths(s1), axis=0), rtol=0.05)


def _bank_of(ds, subject, action, subaction):
    b = ds.bank_select(subject, action)
    return b[ds.bank_metadata(b)["subaction"] == subaction]


def test_bank_holds_every_pose_at_its_rate(prepared, release, tmp_path):
    out, summary, poses = prepared
    root, _ = release
    with PoseDataset(out) as ds:
        assert ds.has_bank and ds.bank_rate_hz == 25.0
        # Every 2nd pose of each converted sequence, in camera coordinates as in the pose files.
        converted = {("S1", "Walking 1.54138969"): ("Walking", 2), ("S1", "Walking.54138969"): ("Walking", 1),
                     ("S1", "TakingPhoto.55011271"): ("Photo", 1), ("S11", "WalkingDog 1.58860488"): ("WalkDog", 1),
                     ("S11", "Directions 1.54138969"): ("Directions", 2)}
        for (subject, stem), (action, sub) in converted.items():
            full = poses[(subject, stem)]
            b = _bank_of(ds, subject, action, sub)
            assert set(ds.bank_metadata(b)["camera"]) == {stem.rsplit(".", 1)[1]}
            np.testing.assert_array_equal(ds.bank_metadata(b)["frame"], np.arange(0, len(full), 2))
            np.testing.assert_allclose(ds.bank_poses(b), full[::2][:, list(h36m.H36M32_TO_17)], rtol=1e-6, atol=1e-3)
        # Skipped sequences (not an action, the corrupt video, no video, a damaged file) have no entries.
        assert summary["bank"] == len(ds.bank_select()) == sum(len(range(0, len(poses[k]), 2)) for k in converted)
        # Images only where frames were extracted: the short video's frame 4 is pose-only.
        rows = ds.bank_image_rows()
        walkdog = _bank_of(ds, "S11", "WalkDog", 1)
        assert list(ds.bank_metadata(walkdog)["frame"]) == [0, 2, 4]
        assert (rows[walkdog][:2] >= 0).all() and rows[walkdog][2] == -1
        assert (rows >= 0).sum() == ds.n and (rows == -1).sum() == 1
        linked = np.flatnonzero(rows >= 0)
        np.testing.assert_array_equal(ds.bank_poses(linked), ds.poses(rows[linked]))
    # Images every 4th frame with the 25 Hz bank: every other bank entry has an image.
    sparse = str(tmp_path / "sparse.h5")
    prepare_h36m.prepare(root, sparse, subjects="S1", frame_step=4, progress=False, bank_rate_hz=25)
    with PoseDataset(sparse) as ds:
        walking = _bank_of(ds, "S1", "Walking", 2)               # 6 poses
        assert list(ds.bank_metadata(walking)["frame"]) == [0, 2, 4]
        rows = ds.bank_image_rows(walking)
        assert rows[1] == -1 and list(ds.metadata(rows[[0, 2]])["frame"]) == [0, 4]


def test_frame_step_must_lie_on_the_bank_grid(release, tmp_path):
    root, _ = release
    with pytest.raises(ValueError, match="frame step 2 is not a multiple of the pose bank's step 5"):
        prepare_h36m.prepare(root, str(tmp_path / "x.h5"), subjects="S1", frame_step=2, progress=False)
    with pytest.raises(SystemExit) as e:
        prepare_h36m.main(["--root", root, "--out", str(tmp_path / "x.h5"), "--frame-step", "3"])
    assert e.value.code == 2
    assert prepare_h36m.main(["--root", root, "--out", str(tmp_path / "y.h5"), "--subjects", "S1",
                              "--frame-step", "3", "--bank-rate", "0"]) == 0
    with PoseDataset(tmp_path / "y.h5") as ds:
        assert not ds.has_bank


def test_boxes_and_crops(prepared):
    out, _, _ = prepared
    with PoseDataset(out) as ds:
        meta, boxes, images, poses = ds.metadata(), ds.boxes(), ds.read_images(np.arange(ds.n)), ds.poses()
        for i in range(ds.n):
            cam = meta["camera"][i]
            expected = prepare_h36m.integer_box(h36m.square_box(h36m.project(poses[i], cam), 0.2))
            np.testing.assert_allclose(boxes[i], expected)
            x0, y0, side = boxes[i]
            # The crop's centre pixel shows the frame's gradient at the box centre, and its frame.
            centre = images[i, 64, 64].astype(float)
            tol = 4 if meta["action"][i] == "Photo" else 8   # PNG frames are exact, mp4 ones lossy
            assert abs(centre[0] - (x0 + side / 2) / 4) < tol and abs(centre[1] - (y0 + side / 2) / 4) < tol
            assert abs(centre[2] - 40 * meta["frame"][i]) < tol
            # An off-centre pixel too (a flipped or transposed crop keeps the centre).
            r, c = 20, 100
            pixel = images[i, r, c].astype(float)
            assert abs(pixel[0] - (x0 + (c + 0.5) * side / 128) / 4) < tol
            assert abs(pixel[1] - (y0 + (r + 0.5) * side / 128) / 4) < tol
            # The joints project inside the crop.
            uv = (h36m.project(poses[i], cam) - [x0, y0]) * 128 / side
            assert (uv >= 0).all() and (uv <= 128).all()


def test_known_corrupt_sequence_is_logged(release, tmp_path, caplog):
    root, _ = release
    with caplog.at_level(logging.WARNING, logger="data.prepare_h36m"):
        prepare_h36m.prepare(root, str(tmp_path / "s11.h5"), subjects="S11", frame_step=3, progress=False,
                             bank_rate_hz=None)
    assert any("Directions.54138969" in r.getMessage() and "corrupt" in r.getMessage() for r in caplog.records)
    assert any("Eating.60457274" in r.getMessage() for r in caplog.records)
    assert any("Smoking.60457274" in r.getMessage() and "Pose" in r.getMessage() for r in caplog.records)


def test_rerun_replaces_the_file_atomically(release, tmp_path):
    root, _ = release
    out = str(tmp_path / "again.h5")
    with open(out, "w") as f:
        f.write("an old, broken file")
    prepare_h36m.prepare(root, out, subjects="S1", frame_step=3, progress=False, bank_rate_hz=None)
    with PoseDataset(out) as ds:
        assert ds.n > 0 and ds.subjects == ("S1",) and not ds.has_bank
    assert not os.path.exists(out + ".tmp")


def test_crop_pads_outside_the_frame():
    frame = np.full((10, 10, 3), 200, np.uint8)
    crop = prepare_h36m.crop_resize(frame, (-10, -10, 20), size=4)
    assert crop[0, 0].max() == 0 and crop[3, 3].min() == 200


def test_cli_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        prepare_h36m.main(["--root", str(tmp_path / "missing"), "--out", "x.h5"])
    assert e.value.code == 2
    assert prepare_h36m.main(["--root", str(tmp_path), "--out", str(tmp_path / "x.h5"), "--subjects", "S5"]) == 1
    assert "D3_Positions_mono" in capsys.readouterr().err

import os

import numpy as np
import pytest

from data import h36m, motion, render, synth
from data import skeleton as sk
from data.dataset import PoseDataset, root_relative

SUBJECTS = ("S1", "S9")
ACTIONS = ("Sitting", "Walking")          # in data.h36m.ACTIONS order
TINY = 1.0 / synth.FRAMES_PER_SEQUENCE          # one frame per sequence and camera


# ---------------------------------------------------------------- motion
@pytest.fixture(scope="module")
def motions():
    profile = synth.SubjectProfile("S5", 0)
    return {a: motion.generate_motion(a, profile.skeleton, profile.height,
                                      np.random.default_rng([7, i]), duration=20.0)
            for i, a in enumerate(h36m.ACTIONS)}, profile


def test_motions_respect_limits_and_touch_the_floor(motions):
    ms, profile = motions
    for action, m in ms.items():
        J, angles = m["joints"], m["angles"]
        assert J.shape[1:] == (17, 3) and len(J) >= 15 * motion.FPS, action
        assert sk.within_limits(angles).all(), action
        # The joints come from Skeleton.forward of those angles, translated.
        fk = profile.skeleton.forward(angles[5])
        np.testing.assert_allclose(J[5] - J[5, 0], fk - fk[0], atol=1e-6)
        # Something rests on the floor in every frame, nothing goes through it.
        lowest = J[..., 2].min(axis=1)
        assert lowest.min() > 0.0 and lowest.max() < 0.1 * profile.height, action
        assert np.abs(J[:, 0, :2]).max() < 2500, action                       # stays in the capture area


def test_motions_have_the_character_of_their_action(motions):
    ms, profile = motions
    height = profile.height
    root = {a: m["joints"][:, 0] for a, m in ms.items()}
    path = {a: np.linalg.norm(np.diff(r[:, :2], axis=0), axis=1).sum() / 1000 for a, r in root.items()}
    # Walking actions cover ground; seated ones do not move at all.
    assert path["Walking"] > 8 and path["WalkTogether"] > 6
    assert path["Sitting"] < 0.01 and path["Eating"] < 0.01
    # Seated pelvis well below the standing one; sitting on the floor lower still.
    assert np.median(root["Sitting"][:, 2]) < 0.4 * height < np.median(root["Walking"][:, 2])
    assert root["SittingDown"][:, 2].min() < 0.2 * height
    # Phoning: a hand near the head for a good part of the time.
    J = ms["Phoning"]["joints"]
    near = np.minimum(np.linalg.norm(J[:, 13] - J[:, 9], axis=1), np.linalg.norm(J[:, 16] - J[:, 9], axis=1))
    assert np.mean(near < 200) > 0.3
    # Walking turns: the heading (facing direction of the hips) takes all directions.
    Jw = ms["Walking"]["joints"]
    right = Jw[:, 1, :2] - Jw[:, 4, :2]
    heading = np.arctan2(right[:, 1], right[:, 0])
    assert len(np.unique(np.floor((heading + np.pi) / (np.pi / 4)))) == 8


def test_subject_profiles_differ_and_are_seeded():
    heights = [synth.SubjectProfile(s, 0).height for s in h36m.ALL_SUBJECTS]
    assert 1550 <= min(heights) and max(heights) <= 1900 and max(heights) - min(heights) > 200
    a, b = synth.SubjectProfile("S9", 0), synth.SubjectProfile("S9", 0)
    np.testing.assert_array_equal(a.skeleton.bone_lengths, b.skeleton.bone_lengths)
    np.testing.assert_array_equal(a.style.albedo, b.style.albedo)
    c = synth.SubjectProfile("S9", 1)
    assert not np.array_equal(a.style.albedo, c.style.albedo)
    # Left and right bones of a subject have the same length.
    bl = a.skeleton.bone_lengths
    for left, right in zip(h36m.LEFT_JOINTS, h36m.RIGHT_JOINTS):
        assert bl[left] == bl[right]


# ---------------------------------------------------------------- rendering
def test_rendered_body_covers_its_projected_joints():
    profile = synth.SubjectProfile("S7", 0)
    m = motion.generate_motion("Directions", profile.skeleton, profile.height, np.random.default_rng(1), 10)
    R, T = h36m.extrinsics("S7", "60457274")
    pose = h36m.world_to_camera(m["joints"][100], R, T)
    crop = h36m.square_box(h36m.project(pose, "60457274"), 0.2)
    rays = render.crop_rays("60457274", crop, 128)
    depth, material, normal = render.rasterize(render.body_primitives(pose, profile.style), rays, "60457274", crop)
    uv = (h36m.project(pose, "60457274") - crop[:2]) * 128 / crop[2]
    assert (uv > 0).all() and (uv < 128).all()
    for j in (0, 7, 8, 9, 10):              # hip, spine, thorax, nose, head top (just inside)
        i, k = int(uv[j, 1]), int(uv[j, 0])
        hits = np.isfinite(depth[max(i - 1, 0):i + 2, max(k - 1, 0):k + 2])
        assert hits.any(), h36m.JOINT_NAMES[j]
    # At the hip pixel the nearest surface is in front of the joint (the body or an arm), not behind.
    i, k = int(uv[0, 1]), int(uv[0, 0])
    z = depth[i, k]                         # rays have z = 1, so t is the depth
    assert pose[0, 2] - 800 < z < pose[0, 2]
    assert (np.abs(np.linalg.norm(normal[np.isfinite(depth)], axis=-1) - 1) < 1e-6).all()


def test_crop_rays_match_exact_undistortion():
    crop = (620.0, 150.0, 380.0)
    rays = render.crop_rays("58860488", crop, 128)
    i, j = np.meshgrid(np.arange(128), np.arange(128), indexing="ij")
    pixels = np.stack([crop[0] + (j + 0.5) * crop[2] / 128, crop[1] + (i + 0.5) * crop[2] / 128], axis=-1)
    exact = h36m.pixel_rays(pixels, "58860488")
    # Within 5% of a crop pixel (one crop pixel spans side / 128 image pixels, i.e. that / f in x/z).
    assert np.abs(rays - exact).max() < 0.05 * crop[2] / 128 / 1149


def test_nearer_primitive_occludes():
    rays = render.crop_rays("54138969", (400, 400, 200), 32)
    axes = np.eye(3)
    far = render.ellipsoid([0, 0, 5000], axes, [300, 300, 300], render.SHIRT)
    near = render.ellipsoid([0, 0, 3000], axes, [100, 100, 100], render.PANTS)
    for order in ([far, near], [near, far]):
        depth, material, _ = render.rasterize(order, rays, "54138969", (400, 400, 200))
        centre = h36m.project([0, 0, 3000], "54138969")
        i, k = (int(v) for v in (centre[::-1] - 400) * 32 / 200)
        assert material[i, k] == render.PANTS and depth[i, k] == pytest.approx(2900, abs=5)


def test_capsule_and_box_intersections_are_exact():
    D = np.array([[[0.0, 0.0, 1.0], [0.05, 0.0, 1.0]]])
    cap = render.capsule([-500, 0, 4000], [500, 0, 4000], 100.0, render.SKIN)
    t, n, _ = render._hit_capsule(D, cap)
    assert t[0, 0] == pytest.approx(3900)                         # the side of the cylinder
    np.testing.assert_allclose(n[0, 0], [0, 0, -1], atol=1e-9)
    b = render.box([0, 0, 4000], np.eye(3), [100, 100, 100], render.CHAIR)
    t, n, _ = render._hit_box(D, b)
    assert t[0, 0] == pytest.approx(3900) and np.isinf(t[0, 1])
    np.testing.assert_allclose(n[0, 0], [0, 0, -1])


# ---------------------------------------------------------------- generation
@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    path = synth.generate(str(d / "a.h5"), scale=TINY, seed=3, workers=1, subjects=SUBJECTS, actions=ACTIONS,
                          progress=False)
    return d, path


def test_generated_file_is_valid_and_complete(tiny_synth):
    _, path = tiny_synth
    with PoseDataset(path) as ds:
        assert ds.n == 2 * 2 * 2 * 4
        assert ds.source == "synthetic" and ds.generator["seed"] == 3 and ds.generator["scale"] == TINY
        assert ds.subjects == SUBJECTS and ds.actions == ACTIONS
        images = ds.read_images(np.arange(ds.n))
        assert images.std() > 20                                   # not blank
        poses, meta = ds.poses(), ds.metadata()
        # Poses are in camera coordinates in front of the camera, 3-8 m away.
        assert (poses[:, :, 2] > 2000).all() and (poses[:, 0, 2] < 8000).all()
        # Each subject's poses have the subject's own bone lengths.
        for s in SUBJECTS:
            sel = meta["subject"] == s
            bl = sk.bone_lengths(poses[sel])
            np.testing.assert_allclose(bl, np.broadcast_to(synth.SubjectProfile(s, 3).skeleton.bone_lengths, bl.shape),
                                       rtol=1e-4, atol=1e-3)
            np.testing.assert_allclose(ds.tpose(s), synth.SubjectProfile(s, 3).tpose(), atol=1e-3)
        # The same frame seen by the four cameras is the same 3D pose.
        rows = np.flatnonzero((meta["subject"] == "S1") & (meta["action"] == "Walking") & (meta["subaction"] == 1))
        assert sorted(meta["camera"][rows]) == sorted(h36m.CAMERA_IDS) and len(set(meta["frame"][rows])) == 1
        world = [np.linalg.inv(h36m.extrinsics("S1", c)[0]) @ p.T for p, c in zip(poses[rows], meta["camera"][rows])]
        rel = [w.T - w.T[0] for w in world]
        np.testing.assert_allclose(rel[1], rel[0], atol=0.1)


def test_generation_is_deterministic_and_independent_of_workers(tiny_synth):
    d, path = tiny_synth
    other = synth.generate(str(d / "b.h5"), scale=TINY, seed=3, workers=2, subjects=SUBJECTS, actions=ACTIONS,
                           progress=False)
    with PoseDataset(path) as a, PoseDataset(other) as b:
        np.testing.assert_array_equal(a.read_images(np.arange(a.n)), b.read_images(np.arange(b.n)))
        np.testing.assert_array_equal(a.poses(), b.poses())
        np.testing.assert_array_equal(a.boxes(), b.boxes())
        for key in ("subject", "action", "camera", "frame"):
            np.testing.assert_array_equal(a.metadata()[key], b.metadata()[key])


def test_different_seed_gives_different_data(tiny_synth):
    d, path = tiny_synth
    other = synth.generate(str(d / "c.h5"), scale=TINY, seed=4, workers=1, subjects=("S1",), actions=("Walking",),
                           progress=False)
    with PoseDataset(path) as a, PoseDataset(other) as b:
        assert not np.allclose(root_relative(a.poses(np.arange(b.n))), root_relative(b.poses()))


def test_ensure_synthetic_reuses_a_matching_file_and_rejects_a_stale_one(tmp_path, monkeypatch):
    calls = []

    def fake_generate(path, scale, seed, workers, progress):
        calls.append((path, scale, seed))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("placeholder")
        return path

    monkeypatch.setattr(synth, "generate", fake_generate)
    monkeypatch.chdir(tmp_path)
    path = synth.ensure_synthetic(scale=0.5, seed=2)
    assert path == os.path.join("cache", "synth_h36m_v1_scale0.5_seed2.h5")
    assert calls == [(path, 0.5, 2)]
    # The placeholder is not a valid dataset: it is regenerated.
    synth.ensure_synthetic(scale=0.5, seed=2)
    assert len(calls) == 2


def test_ensure_synthetic_keeps_a_matching_file(tiny_synth, monkeypatch):
    _, path = tiny_synth
    monkeypatch.setattr(synth, "generate", lambda *a, **k: pytest.fail("regenerated a matching file"))
    # The tiny file holds two subjects and actions only: it does not match the full settings...
    assert "subjects" in synth._matches(path, TINY, 3)
    # ...and the reason names the mismatching setting for scale and seed too.
    assert "seed" in synth._matches(path, TINY, 4) or "subjects" in synth._matches(path, TINY, 4)
    monkeypatch.setattr(synth, "_matches", lambda *a: None)
    assert synth.ensure_synthetic(path, scale=TINY, seed=3) == path


def test_preview_from_file(tiny_synth, tmp_path):
    _, path = tiny_synth
    png = tmp_path / "p.png"
    synth.preview(str(png), data=path, n_rows=2, n_cols=3)
    assert png.stat().st_size > 10000


def test_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit) as e:
        synth.main(["--scale", "0"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        synth.main(["--data", "x.h5"])

import numpy as np
import pytest
from hypothesis import given, strategies as st

from data import h36m


def test_skeleton_tables_are_consistent():
    assert len(h36m.JOINT_NAMES) == len(h36m.PARENTS) == len(h36m.H36M32_TO_17) == h36m.N_JOINTS == 17
    assert h36m.PARENTS[h36m.ROOT] == -1
    # Parents come before their children, so forward kinematics can run in index order.
    assert all(0 <= p < j for j, p in enumerate(h36m.PARENTS) if j != h36m.ROOT)
    names = dict(enumerate(h36m.JOINT_NAMES))
    assert names[h36m.PARENTS[h36m.JOINT_NAMES.index("RKnee")]] == "RHip"
    assert names[h36m.PARENTS[h36m.JOINT_NAMES.index("LWrist")]] == "LElbow"
    assert names[h36m.PARENTS[h36m.JOINT_NAMES.index("Head")]] == "Neck/Nose"
    assert names[h36m.PARENTS[h36m.JOINT_NAMES.index("RShoulder")]] == "Thorax"


def test_left_right_sets_are_mirror_images():
    for left, right in zip(h36m.LEFT_JOINTS, h36m.RIGHT_JOINTS):
        assert h36m.JOINT_NAMES[left][0] == "L" and h36m.JOINT_NAMES[right][0] == "R"
        assert h36m.JOINT_NAMES[left][1:] == h36m.JOINT_NAMES[right][1:]
        # Mirrored joints hang from mirrored (or shared midline) parents.
        pl, pr = h36m.PARENTS[left], h36m.PARENTS[right]
        assert h36m.FLIP_PERMUTATION[pl] == pr
    perm = np.array(h36m.FLIP_PERMUTATION)
    assert np.array_equal(perm[perm], np.arange(17))
    assert set(h36m.LEFT_JOINTS).isdisjoint(h36m.RIGHT_JOINTS)


def test_subjects_and_parse():
    assert set(h36m.TRAIN_SUBJECTS) | set(h36m.TEST_SUBJECTS) == set(h36m.ALL_SUBJECTS)
    assert h36m.parse_subjects("S9,S11") == ("S9", "S11")
    assert h36m.parse_subjects(["s11", "9", "S9"]) == ("S9", "S11")
    assert h36m.parse_subjects("train") == h36m.TRAIN_SUBJECTS
    with pytest.raises(ValueError, match="S2.*S1, S5"):
        h36m.parse_subjects("S1,S2")


@pytest.mark.parametrize("raw, canonical, number", [
    ("TakingPhoto", "Photo", None), ("TakingPhoto 1", "Photo", 1), ("Photo 2", "Photo", 2),
    ("WalkingDog", "WalkDog", None), ("WalkDog 1", "WalkDog", 1), ("WalkTogether 2", "WalkTogether", 2),
    ("WalkingTogether", "WalkTogether", None), ("Walking 1", "Walking", 1), ("Walking", "Walking", None),
    ("SittingDown 2", "SittingDown", 2), ("Sitting Down", "SittingDown", None),
    ("Directions", "Directions", None), ("Discussion 3", "Discussion", 3), ("phoning", "Phoning", None),
])
def test_action_aliases(raw, canonical, number):
    assert h36m.split_action(raw) == (canonical, number)
    assert h36m.canonical_action(raw) == canonical


def test_unknown_action_names_it_and_lists_valid_ones():
    with pytest.raises(ValueError, match=r"'_ALL 1'.*Directions.*WalkTogether"):
        h36m.canonical_action("_ALL 1")
    assert all(h36m.canonical_action(a) == a for a in h36m.ACTIONS)


def test_projection_matches_hand_computation():
    cam = h36m.CAMERAS["54138969"]
    point = np.array([300.0, -200.0, 4000.0])
    x, y = 300 / 4000, -200 / 4000
    r2 = x * x + y * y
    k1, k2, k3 = cam.k
    p1, p2 = cam.p
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    tan = p1 * y + p2 * x
    xd = x * (radial + tan) + p2 * r2
    yd = y * (radial + tan) + p1 * r2
    expected = [cam.fx * xd + cam.cx, cam.fy * yd + cam.cy]
    np.testing.assert_allclose(h36m.project(point, cam), expected, rtol=0, atol=1e-9)
    # The optical axis lands on the principal point; a camera id works like the Camera.
    np.testing.assert_allclose(h36m.project([0, 0, 3000.0], "55011271"),
                               [h36m.CAMERAS["55011271"].cx, h36m.CAMERAS["55011271"].cy])


@given(st.floats(-450, 450), st.floats(-450, 450), st.sampled_from(h36m.CAMERA_IDS))
def test_pixel_rays_invert_projection(u, v, cam):
    c = h36m.CAMERAS[cam]
    pixel = np.array([c.cx + u, c.cy + v])
    ray = h36m.pixel_rays(pixel, cam)
    np.testing.assert_allclose(h36m.project(ray * 3777.0, cam), pixel, atol=1e-6)


def test_camera_intrinsics_and_extrinsics_are_plausible():
    assert set(h36m.CAMERAS) == set(h36m.CAMERA_IDS)
    for cam in h36m.CAMERAS.values():
        assert 1140 < cam.fx < 1155 and 1140 < cam.fy < 1155
        assert 490 < cam.cx < 530 and 490 < cam.cy < 530
        assert cam.width == 1000 and cam.height in (1000, 1002)
    for subject in h36m.ALL_SUBJECTS:
        for cid in h36m.CAMERA_IDS:
            R, T = h36m.extrinsics(subject, cid)
            np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-6)
            assert np.linalg.det(R) > 0
            # About 5 m from the capture centre, about 1.5 m high, looking at it.
            assert 4000 < np.linalg.norm(T[:2]) < 6000 and 1300 < T[2] < 1800
            centre = h36m.world_to_camera([0, 0, 1000.0], R, T)
            assert centre[2] > 3000
            u, v = h36m.project(centre, cid)
            assert 200 < u < 800 and 200 < v < 800


def test_square_box_encloses_points_with_margin():
    pts = np.array([[100.0, 200.0], [300.0, 260.0], [150.0, 600.0]])
    x0, y0, side = h36m.square_box(pts, margin=0.2)
    assert side == pytest.approx(400 * 1.2)
    assert x0 + side / 2 == pytest.approx(200) and y0 + side / 2 == pytest.approx(400)
    assert (pts >= [x0, y0]).all() and (pts <= [x0 + side, y0 + side]).all()

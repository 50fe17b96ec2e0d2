"""apf.bvh: BVH files of joint angles, read back by an independent parser (pybvh, the test extra)
whose forward kinematics must reproduce the exported joints within 0.01 mm; a second forward
kinematics from pybvh's parsed hierarchy with scipy's Euler angles; the Euler conversions; the
rest pose and axes; bad input."""
import os

import numpy as np
import pybvh
import pytest
from scipy.spatial.transform import Rotation

from apf import bvh
from data.h36m import JOINT_NAMES, PARENTS
from data.skeleton import ANGLE_LIMITS, N_ANGLES, Skeleton, angle_index, clip_angles

SKEL = Skeleton.from_height(1700.0)
# how the file names the 17 joints (apf/bvh.py's docstring): a JOINT of the joint's name, or for
# the five leaves the End Site of the joint above them; pybvh names an End Site "EndSite<parent>"
LEAF_OF = {"RFoot": "RKnee", "LFoot": "LKnee", "Head": "Neck/Nose", "LWrist": "LElbow", "RWrist": "RElbow"}
NODE_OF = {j: "EndSite" + LEAF_OF[j] if j in LEAF_OF else j for j in JOINT_NAMES}


def valid_angles(rng, n):
    """Angles anywhere within the limits (the root any rotation)."""
    a = rng.uniform(ANGLE_LIMITS[:, 0], ANGLE_LIMITS[:, 1], size=(n, N_ANGLES))
    a[:, :3] = Rotation.random(n, random_state=rng.integers(2**31)).as_rotvec()
    return clip_angles(a)


def read(path):
    return pybvh.read_bvh_file(str(path), world_up="+y")


def parsed_joints(b):
    """(F, 17, 3) of pybvh's own forward kinematics, in JOINT_NAMES order."""
    names = [n.name for n in b.nodes]
    return b.node_positions()[:, [names.index(NODE_OF[j]) for j in JOINT_NAMES]]


def scipy_joints(b):
    """(F, 17, 3) of a forward kinematics written here from pybvh's parsed nodes (offsets, channel
    order, parents) and scipy's intrinsic Euler angles (BVH's reading: the channels' rotations
    multiplied in the order listed)."""
    nodes = b.nodes
    F = b.frame_count
    pos, acc, col = {}, {}, 0
    for n in nodes:
        if n.is_end_site():
            pos[id(n)] = pos[id(n.parent)] + np.einsum("fij,j->fi", acc[id(n.parent)], n.offset)
            continue
        R = Rotation.from_euler("".join(n.rot_channels).upper(), b.joint_angles[:, col]).as_matrix()
        col += 1
        if n.parent is None:
            pos[id(n)], acc[id(n)] = b.root_pos + np.asarray(n.offset), R
        else:
            pos[id(n)] = pos[id(n.parent)] + np.einsum("fij,j->fi", acc[id(n.parent)], n.offset)
            acc[id(n)] = acc[id(n.parent)] @ R
    by_name = {n.name: pos[id(n)] for n in nodes}
    assert all(by_name[NODE_OF[j]].shape == (F, 3) for j in JOINT_NAMES)
    return np.stack([by_name[NODE_OF[j]] for j in JOINT_NAMES], axis=1)


def expected(skel, angles, root, world):
    """The exported joints, computed here: the file's world rotation of the skeleton's joints
    plus its root translation."""
    return (skel.forward(angles) + root[:, None]) @ np.asarray(world).T


# ----------------------------------------------------------------------------- the round trip
@pytest.mark.parametrize("order", ["YZX", "ZXY"])
def test_an_independent_parser_reproduces_the_joints(tmp_path, order):
    rng = np.random.default_rng(0 if order == "YZX" else 1)
    skel = Skeleton(rng.uniform(60, 500, 17))                      # another subject's bone lengths
    angles = valid_angles(rng, 64)
    root = rng.normal(0, 1500, (64, 3))
    world = Rotation.random(random_state=7).as_matrix()
    path = bvh.write_bvh(tmp_path / "seq.bvh", skel, angles, 50 / 110, root, world, order=order)
    b = read(path)
    assert b.frame_count == 64 and b.frame_time == pytest.approx(2.2, rel=1e-9)
    assert all(n.rot_channels == list(order) for n in b.nodes if not n.is_end_site())
    want = expected(skel, angles, root, world)
    for got in (parsed_joints(b), scipy_joints(b)):
        err = np.abs(got - want).max()
        assert err < 0.01, err           # measured: about 3e-5 mm (6 decimals in the file)
    np.testing.assert_allclose(bvh.bvh_joints(skel, angles, root, world), want, atol=1e-9)


def test_hierarchy_follows_the_kinematic_tree(tmp_path):
    b = read(bvh.write_bvh(tmp_path / "t.bvh", SKEL, np.zeros((1, N_ANGLES)), 50))
    parent = {n.name: (n.parent.name if n.parent is not None else None) for n in b.nodes}
    helpers = {"Lumbar", "LClavicle", "RClavicle"}
    for j, p in enumerate(PARENTS):
        if p < 0:
            assert parent[NODE_OF[JOINT_NAMES[j]]] is None
            continue
        up = parent[NODE_OF[JOINT_NAMES[j]]]
        while up in helpers:                     # the zero-offset helper joints in between
            up = parent[up]
        assert up == JOINT_NAMES[p], JOINT_NAMES[j]
    for n in b.nodes:
        if n.name in helpers:
            assert np.all(np.asarray(n.offset) == 0)
        if n.is_end_site():
            assert n.parent.name in LEAF_OF.values()
    assert sum(n.is_end_site() for n in b.nodes) == 5
    # offsets are the bone lengths
    length = {n.name: np.linalg.norm(n.offset) for n in b.nodes}
    for j in range(1, 17):
        assert length[NODE_OF[JOINT_NAMES[j]]] == pytest.approx(SKEL.bone_lengths[j], abs=1e-6)


def test_rest_pose_and_axes(tmp_path):
    """All angles zero: every rotation channel 0, the T pose standing along +Y, facing +Z, left
    arm along +X. Knees bend backward (-Z), elbows forward (+Z). CAMERA_TO_BVH turns camera
    coordinates (y down) to Y up."""
    path = bvh.write_bvh(tmp_path / "t.bvh", SKEL, np.zeros((1, N_ANGLES)), 50)
    b = read(path)
    assert np.all(b.joint_angles == 0)
    J = {n: p for n, p in zip(JOINT_NAMES, parsed_joints(b)[0])}
    assert J["Head"][1] > J["Thorax"][1] > J["Hip"][1] > J["RKnee"][1] > J["RFoot"][1]
    assert J["LWrist"][0] > J["LShoulder"][0] > 0 > J["RShoulder"][0] > J["RWrist"][0]
    bent = np.zeros((1, N_ANGLES))
    bent[0, angle_index("LKnee_flex")] = bent[0, angle_index("LElbow_flex")] = np.pi / 2
    J = dict(zip(JOINT_NAMES, parsed_joints(read(bvh.write_bvh(tmp_path / "b.bvh", SKEL, bent, 50)))[0]))
    assert J["LFoot"][2] < J["LKnee"][2] - 400 and J["LWrist"][2] > J["LElbow"][2] + 200
    # a pose in camera coordinates, upright (head toward -y), in front of the camera
    cam = np.zeros((1, N_ANGLES))
    cam[0, :3] = Rotation.from_euler("x", 90, degrees=True).as_rotvec()     # body z (up) -> camera -y
    J = parsed_joints(read(bvh.write_bvh(tmp_path / "c.bvh", SKEL, cam, 50, world=bvh.CAMERA_TO_BVH)))[0]
    assert J[JOINT_NAMES.index("Head"), 1] > 700      # 0.47 of 1700 mm above the hip


def test_knee_and_elbow_rotations_stay_off_the_singular_middle_axis():
    """YZX's middle axis is the forward axis Z: the hinges turn about X (knees) and Y (elbows), so
    their middle angle is 0, where ZXY puts the knee flexion (up to 160 degrees) in the middle."""
    rng = np.random.default_rng(3)
    L = bvh.local_rotations(SKEL, valid_angles(rng, 500))
    hinges = [bvh.NODE_NAMES.index(n) for n in ("RKnee", "LKnee", "LElbow", "RElbow")]
    e = np.degrees(bvh.euler_from_matrix(L[:, hinges], "YZX"))
    assert np.abs(e[..., 1]).max() < 1e-6
    knees = np.degrees(bvh.euler_from_matrix(L[:, hinges[:2]], "ZXY"))
    assert np.abs(knees[..., 1]).max() > 80


def test_channels_are_continuous_over_frames(tmp_path):
    """A body turning three times about the vertical: no 360-degree jumps between frames."""
    n = 90
    angles = np.zeros((n, N_ANGLES))
    angles[:, :3] = (Rotation.from_euler("z", np.linspace(0, 3 * 360, n)[:, None], degrees=True)
                     * Rotation.from_euler("x", 20, degrees=True)).as_rotvec()
    angles[:, angle_index("RKnee_flex")] = np.linspace(0, 2.5, n)
    b = read(bvh.write_bvh(tmp_path / "spin.bvh", SKEL, angles, 50))
    step = np.abs(np.diff(np.degrees(b.joint_angles), axis=0))
    assert step.max() < 60, step.max()
    assert np.abs(parsed_joints(b) - expected(SKEL, angles, np.zeros((n, 3)), bvh.BODY_TO_BVH)).max() < 0.01


# ----------------------------------------------------------------------------- Euler angles
@pytest.mark.parametrize("order", bvh.EULER_ORDERS)
def test_euler_angles_match_scipy_intrinsic(order):
    R = Rotation.random(500, random_state=11).as_matrix()
    e = bvh.euler_from_matrix(R, order)
    np.testing.assert_allclose(Rotation.from_euler(order, e).as_matrix(), R, atol=1e-12)
    np.testing.assert_allclose(bvh.matrix_from_euler(e, order), R, atol=1e-12)
    assert np.all(np.abs(e[:, 1]) <= np.pi / 2 + 1e-12)
    # at and next to the singularity of the middle angle
    lock = np.array([[0.3, np.pi / 2, -0.7], [1.0, -np.pi / 2, 0.4], [0.2, np.pi / 2 - 1e-9, 0.1],
                     [-2.0, -np.pi / 2 + 1e-6, 3.0]])
    Rl = Rotation.from_euler(order, lock).as_matrix()
    np.testing.assert_allclose(bvh.matrix_from_euler(bvh.euler_from_matrix(Rl, order), order), Rl, atol=1e-8)


# ----------------------------------------------------------------------------- poses to angles
def test_angles_of_poses_reproduce_valid_poses():
    rng = np.random.default_rng(5)
    a = valid_angles(rng, 50)
    poses = (SKEL.forward(a) + [100.0, -20.0, 4500.0]).astype(np.float32)    # float32, not root-relative
    angles, err = bvh.angles_of_poses(SKEL, poses)
    assert err < 2e-3, err
    np.testing.assert_allclose(SKEL.forward(angles), poses - poses[:, :1], atol=2e-3)
    other = Skeleton.from_height(1500.0).forward(a)
    with pytest.raises(ValueError, match="not poses of this skeleton"):
        bvh.angles_of_poses(SKEL, other)
    assert bvh.angles_of_poses(SKEL, other, tol_mm=None)[1] > 10


# ----------------------------------------------------------------------------- bad input
def test_bad_input_one_line_errors(tmp_path):
    a = np.zeros((3, N_ANGLES))
    nan = a.copy()
    nan[1, 4] = np.nan
    cases = [
        (dict(angles=np.zeros((3, 28))), "angles: expected shape"),
        (dict(angles=np.zeros((0, N_ANGLES))), "angles: expected shape"),
        (dict(angles=np.zeros(N_ANGLES)), "angles: expected shape"),
        (dict(angles=nan), "1 of 3 frames hold NaN"),
        (dict(fps=0), "fps"), (dict(fps=float("nan")), "fps"), (dict(fps=-5), "fps"),
        (dict(root_translation=np.zeros((2, 3))), "root_translation: expected shape (3, 3)"),
        (dict(root_translation=np.full((3, 3), np.inf)), "root_translation: holds NaN"),
        (dict(world=np.diag([1.0, 1.0, -1.0])), "not a rotation"),
        (dict(world=np.eye(2)), "3x3"),
        (dict(order="XYX"), "euler order"),
        (dict(skeleton="S9"), "skeleton"),
    ]
    for change, words in cases:
        kw = dict(skeleton=SKEL, angles=a, fps=50.0, root_translation=None, world=bvh.BODY_TO_BVH, order="YZX")
        kw.update(change)
        with pytest.raises(ValueError) as info:
            bvh.write_bvh(tmp_path / "x.bvh", **kw)
        assert words in str(info.value) and "\n" not in str(info.value), (change, str(info.value))
    assert not os.listdir(tmp_path)                      # nothing written, no temporary left
    with pytest.raises(ValueError, match="poses: expected shape"):
        bvh.angles_of_poses(SKEL, np.zeros((2, 16, 3)))
    with pytest.raises(ValueError, match="NaN"):
        bvh.angles_of_poses(SKEL, np.full((2, 17, 3), np.nan))
    # an unwritable place: a file where the folder should be; the error names the file
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "x.bvh"
    with pytest.raises(OSError) as info:
        bvh.write_bvh(target, SKEL, a, 50)
    assert info.value.filename == str(target)

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.spatial.transform import Rotation

from data.h36m import FLIP_PERMUTATION, JOINT_NAMES, N_JOINTS
from data import skeleton as sk
from data.skeleton import (
    ANGLE_LIMITS, ANGLE_NAMES, N_ANGLES, REST_GEOMETRY, SWING_CONES, Skeleton, angle_index, bone_lengths,
    clip_angles, load_limits, matrix_to_rotvec, rotvec_to_matrix, within_limits,
)

J = {name: i for i, name in enumerate(JOINT_NAMES)}
SKEL = Skeleton.from_height(1700.0)


def random_valid_angles(rng, n):
    """Angles uniform in the limits box, projected onto the shoulder cones."""
    return clip_angles(rng.uniform(ANGLE_LIMITS[:, 0], ANGLE_LIMITS[:, 1], size=(n, N_ANGLES)))


def set_angles(**values):
    a = np.zeros(N_ANGLES)
    for name, deg in values.items():
        a[angle_index(name)] = np.radians(deg)
    return a


def mirror_angles(a):
    """Angles of the mirror image (x -> -x) of the pose of `a`."""
    out = np.array(a, dtype=np.float64)
    out[..., 1:3] *= -1   # a mirrored rotation vector is (x, -y, -z)
    for name in ("Lumbar_lat", "Spine_lat", "Spine_twist", "Neck_lat", "Head_lat"):
        out[..., angle_index(name)] *= -1
    for i, name in enumerate(ANGLE_NAMES):
        if name[0] in "LR" and name[1].isupper():
            out[..., angle_index(("R" if name[0] == "L" else "L") + name[1:])] = a[..., i]
    return out


# ---------------------------------------------------------------- constants
def test_angle_table_is_consistent():
    assert len(ANGLE_NAMES) == N_ANGLES == ANGLE_LIMITS.shape[0] == len(set(ANGLE_NAMES))
    assert ANGLE_LIMITS.shape == (N_ANGLES, 2)
    assert np.all(ANGLE_LIMITS[:, 0] < 0) and np.all(ANGLE_LIMITS[:, 1] > 0)  # zero (T pose) is valid
    assert np.all(ANGLE_LIMITS[:3] == [[-np.pi, np.pi]] * 3)
    for i, name in enumerate(ANGLE_NAMES):
        assert angle_index(name) == i
    with pytest.raises(ValueError, match="unknown angle"):
        angle_index("Tail_wag")
    assert within_limits(np.zeros(N_ANGLES))
    # The cone keeps every shoulder swing below a half turn (where the exp map wraps).
    for _, radius in SWING_CONES:
        assert radius < np.pi


# ---------------------------------------------------------------- rotations
def test_rotvec_helpers_match_scipy():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(500, 3))
    v *= (rng.uniform(0, np.pi, 500) / np.linalg.norm(v, axis=1))[:, None]
    v[:5] *= 1e-9                                                 # near the identity
    v[5:10] *= np.pi / np.linalg.norm(v[5:10], axis=1)[:, None]   # half turns
    R = rotvec_to_matrix(v)
    np.testing.assert_allclose(R, Rotation.from_rotvec(v).as_matrix(), atol=1e-12)
    back = matrix_to_rotvec(R)
    np.testing.assert_allclose(rotvec_to_matrix(back), R, atol=1e-12)
    assert np.all(np.linalg.norm(back, axis=1) <= np.pi + 1e-12)
    np.testing.assert_allclose(back[10:], v[10:], atol=1e-9)      # unique below a half turn
    with pytest.raises(ValueError, match="v:"):
        rotvec_to_matrix(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="R:"):
        matrix_to_rotvec(np.zeros((4, 3)))


# ---------------------------------------------------------------- forward
def test_tpose_is_upright_facing_forward_with_horizontal_arms():
    T = SKEL.tpose()
    bl = SKEL.bone_lengths
    assert T.shape == (N_JOINTS, 3)
    np.testing.assert_array_equal(T[0], 0.0)
    np.testing.assert_allclose(bone_lengths(T), bl, atol=1e-9)
    # Right side on +x, left on -x; the spine straight up; legs straight down.
    assert T[J["RHip"], 0] > 0 > T[J["LHip"], 0]
    for a, b in (("Hip", "Spine"), ("Spine", "Thorax")):
        np.testing.assert_allclose(T[J[b]] - T[J[a]], [0, 0, bl[J[b]]], atol=1e-9)
    # The neck and head in their rest geometry (issue 14): the neck bone tilted forward, the head
    # bone at the rest angle to it, leaning back (the head top above and behind the nose).
    tilt, angle = REST_GEOMETRY["neck_tilt_deg"], REST_GEOMETRY["head_neck_angle_deg"]
    np.testing.assert_allclose(T[J["Neck/Nose"]] - T[J["Thorax"]], bl[9] * np.array([0, np.sin(tilt), np.cos(tilt)]),
                               atol=1e-9)
    np.testing.assert_allclose(T[J["Head"]] - T[J["Neck/Nose"]],
                               bl[10] * np.array([0, -np.sin(angle - tilt), np.cos(angle - tilt)]), atol=1e-9)
    u, v = T[J["Neck/Nose"]] - T[J["Thorax"]], T[J["Head"]] - T[J["Neck/Nose"]]
    assert np.degrees(np.arccos(u @ v / bl[9] / bl[10])) == pytest.approx(np.degrees(angle))
    assert 0 < np.degrees(tilt) < 45 and 48 <= np.degrees(angle) <= 108     # the measured 48-108 degrees
    np.testing.assert_allclose(T[J["RFoot"]], [bl[1], 0, -bl[2] - bl[3]], atol=1e-9)
    # Arms horizontal at the thorax's height.
    for j in ("LShoulder", "LElbow", "LWrist", "RShoulder", "RElbow", "RWrist"):
        assert abs(T[J[j], 2] - T[J["Thorax"], 2]) < 1e-9 and abs(T[J[j], 1]) < 1e-9
    assert T[J["RWrist"], 0] > T[J["RElbow"], 0] > T[J["RShoulder"], 0] > 0
    # The subject faces +y: knees bend backward, elbows forward, hip flexion lifts the thigh forward.
    p = SKEL.forward(set_angles(RKnee_flex=90, LElbow_flex=90, LHip_flex=90, RShoulder_abd=-90))
    np.testing.assert_allclose(p[J["RFoot"]] - p[J["RKnee"]], [0, -bl[3], 0], atol=1e-9)
    np.testing.assert_allclose(p[J["LWrist"]] - p[J["LElbow"]], [0, bl[13], 0], atol=1e-9)
    np.testing.assert_allclose(p[J["LKnee"]] - p[J["LHip"]], [0, bl[5], 0], atol=1e-9)
    np.testing.assert_allclose(p[J["RElbow"]] - p[J["RShoulder"]], [0, 0, -bl[15]], atol=1e-9)
    p = SKEL.forward(set_angles(Spine_flex=90, RHip_abd=90, RClavicle_elev=90))
    np.testing.assert_allclose(p[J["Thorax"]] - p[J["Spine"]], [0, bl[8], 0], atol=1e-9)
    np.testing.assert_allclose(p[J["RKnee"]] - p[J["RHip"]], [bl[2], 0, 0], atol=1e-9)
    np.testing.assert_allclose(p[J["RShoulder"]] - p[J["Thorax"]], [0, bl[14], 0], atol=1e-9)
    # Protraction turns the shoulder forward and carries the arm with it (not the elevation);
    # the neck turns by half the difference of the two protractions.
    p = SKEL.forward(set_angles(LClavicle_prot=90, RClavicle_prot=90))
    np.testing.assert_allclose(p[J["LShoulder"]] - p[J["Thorax"]], [0, bl[11], 0], atol=1e-9)
    np.testing.assert_allclose(p[J["RWrist"]] - p[J["RShoulder"]], [0, bl[15] + bl[16], 0], atol=1e-9)
    np.testing.assert_allclose(p[[9, 10]], T[[9, 10]], atol=1e-9)
    p = SKEL.forward(set_angles(RClavicle_prot=90, RClavicle_elev=30))
    np.testing.assert_allclose(p[J["RElbow"]] - p[J["RShoulder"]], [0, bl[15], 0], atol=1e-9)   # arm not raised
    rz = rotvec_to_matrix(np.radians(45) * np.array([0, 0, 1.0]))
    np.testing.assert_allclose(p[[9, 10]] - p[8], (T[[9, 10]] - T[8]) @ rz.T, atol=1e-9)


def test_forward_keeps_bone_lengths_and_mirrors():
    rng = np.random.default_rng(2)
    a = rng.uniform(-4, 4, size=(200, N_ANGLES))   # even far outside the limits
    P = SKEL.forward(a)
    np.testing.assert_allclose(bone_lengths(P), np.broadcast_to(SKEL.bone_lengths, (200, N_JOINTS)),
                               rtol=1e-12)
    np.testing.assert_array_equal(P[:, 0], 0.0)
    # Right limbs are the mirror images of the left ones (the skeleton is symmetric).
    mirrored = SKEL.forward(mirror_angles(a))
    expected = P[:, list(FLIP_PERMUTATION)] * [-1, 1, 1]
    np.testing.assert_allclose(mirrored, expected, atol=1e-9)


def test_forward_is_vectorised_over_leading_dimensions():
    rng = np.random.default_rng(3)
    a = random_valid_angles(rng, 6).reshape(2, 3, N_ANGLES)
    P = SKEL.forward(a)
    assert P.shape == (2, 3, N_JOINTS, 3)
    for i in range(2):
        for k in range(3):
            np.testing.assert_allclose(P[i, k], SKEL.forward(a[i, k]), atol=1e-12)
    assert SKEL.inverse(P).shape == (2, 3, N_ANGLES)


# ---------------------------------------------------------------- inverse
def test_round_trip_on_random_valid_poses():
    rng = np.random.default_rng(4)
    a = random_valid_angles(rng, 20000)
    P = SKEL.forward(a)
    b = SKEL.inverse(P)
    assert within_limits(b).all()
    err = np.abs(SKEL.forward(b) - P).max()
    assert err < 1e-6, err
    # Observable angles come back unchanged: those away from the hinge-straight ambiguity, and of
    # the twist and the protractions their observable combinations (the clavicles' azimuths).
    knee_bent = np.abs(a[:, angle_index("RKnee_flex")]) > np.radians(6)
    for name in ("RHip_flex", "RHip_abd", "Neck_flex", "Neck_lat", "Head_flex", "Head_lat", "LClavicle_elev",
                 "RClavicle_elev", "LShoulder_abd", "RShoulder_flex"):
        np.testing.assert_allclose(b[:, angle_index(name)], a[:, angle_index(name)], atol=1e-7)
    np.testing.assert_allclose(b[knee_bent, angle_index("RHip_rot")], a[knee_bent, angle_index("RHip_rot")],
                               atol=1e-7)
    # (a hinge within 10 degrees of straight has two equivalent (flex, twist) pairs within the limits)
    bent = np.abs(a[:, angle_index("LElbow_flex")]) > np.radians(11)
    np.testing.assert_allclose(b[bent, angle_index("LElbow_flex")], a[bent, angle_index("LElbow_flex")], atol=1e-7)
    twist, prot_l, prot_r = (angle_index(n) for n in ("Spine_twist", "LClavicle_prot", "RClavicle_prot"))
    np.testing.assert_allclose(b[:, twist] - b[:, prot_l], a[:, twist] - a[:, prot_l], atol=1e-7)
    np.testing.assert_allclose(b[:, twist] + b[:, prot_r], a[:, twist] + a[:, prot_r], atol=1e-7)


def test_twist_and_protraction_exchange_moves_no_joint():
    """The twist exchanged with an asymmetric protraction moves no joint; inverse returns the
    balanced twist (equal protractions) where it is within the limits, else the nearest valid one."""
    rng = np.random.default_rng(14)
    a = random_valid_angles(rng, 500)
    twist, prot_l, prot_r = (angle_index(n) for n in ("Spine_twist", "LClavicle_prot", "RClavicle_prot"))
    b = a.copy()
    u = rng.uniform(-0.3, 0.3, 500)
    b[:, twist] += u
    b[:, prot_l] += u
    b[:, prot_r] -= u
    np.testing.assert_allclose(SKEL.forward(b), SKEL.forward(a), atol=1e-9)
    # symmetric protractions within the limits: the angles themselves come back
    a[:, prot_r] = a[:, prot_l] * 0.9
    a[:, twist] *= 0.5
    back = SKEL.inverse(SKEL.forward(a))
    h = (a[:, prot_l] + a[:, prot_r]) / 2
    np.testing.assert_allclose(back[:, prot_l], h, atol=1e-9)
    np.testing.assert_allclose(back[:, prot_r], h, atol=1e-9)
    np.testing.assert_allclose(back[:, twist], a[:, twist] + (a[:, prot_r] - a[:, prot_l]) / 2, atol=1e-9)
    # a twist at its limit with the left clavicle protracted and the right retracted: the balanced
    # twist would be beyond the limit, so inverse keeps one within it (the round trip is exact)
    lo, hi = np.degrees(ANGLE_LIMITS[twist])
    p_lo, p_hi = np.degrees(ANGLE_LIMITS[prot_l])
    edge = set_angles(Spine_twist=hi - 1, LClavicle_prot=-p_hi + 2, RClavicle_prot=p_hi - 2, LShoulder_abd=-70,
                      RElbow_flex=50)
    back = SKEL.inverse(SKEL.forward(edge))
    assert within_limits(back)
    np.testing.assert_allclose(SKEL.forward(back), SKEL.forward(edge), atol=1e-9)
    assert np.degrees(back[twist]) == pytest.approx(hi)
    # shoulders both beyond the protraction limit: no twist helps, the protractions are clipped
    both = SKEL.forward(set_angles(LClavicle_prot=p_hi, RClavicle_prot=p_hi))
    both_more = both.copy()
    rz = rotvec_to_matrix(np.radians(-10) * np.array([0, 0, 1.0]))
    both_more[[11, 12, 13]] = (both[[11, 12, 13]] - both[8]) @ rz.T + both[8]          # left: 10 more forward
    rz = rotvec_to_matrix(np.radians(10) * np.array([0, 0, 1.0]))
    both_more[[14, 15, 16]] = (both[[14, 15, 16]] - both[8]) @ rz.T + both[8]          # right: 10 more forward
    raw = SKEL.inverse(both_more, clip=False)
    np.testing.assert_allclose(np.degrees(raw[[prot_l, prot_r]]), p_hi + 10, atol=1e-9)
    np.testing.assert_allclose(np.degrees(SKEL.inverse(both_more)[[prot_l, prot_r]]), p_hi, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(0.5, 1.5))
def test_round_trip_property(seed, scale):
    rng = np.random.default_rng(seed)
    skel = Skeleton(np.r_[0.0, rng.uniform(80, 500, N_JOINTS - 1)] * scale)
    a = random_valid_angles(rng, 8)
    # Exercise the limits themselves too: push some angles onto their bounds.
    on_bound = rng.random(a.shape) < 0.15
    a = clip_angles(np.where(on_bound, ANGLE_LIMITS[:, rng.integers(0, 2)], a))
    P = skel.forward(a)
    np.testing.assert_allclose(skel.forward(skel.inverse(P)), P, atol=1e-6)


def test_inverse_ignores_root_translation_and_absorbs_rotation():
    rng = np.random.default_rng(5)
    a = random_valid_angles(rng, 50)
    P = SKEL.forward(a)
    R = Rotation.random(50, random_state=6).as_matrix()
    moved = np.einsum("nij,nkj->nki", R, P) + rng.normal(0, 1000, size=(50, 1, 3))
    b = SKEL.inverse(moved)
    # The same body pose in the body frame (compared through joints: a nearly straight elbow has
    # two equivalent (flex, twist) pairs).
    b[:, :3] = a[:, :3] = 0.0
    np.testing.assert_allclose(SKEL.forward(b), SKEL.forward(a), atol=1e-6)
    b = SKEL.inverse(moved)
    np.testing.assert_allclose(SKEL.forward(b), moved - moved[:, :1], atol=1e-6)


def test_inverse_keeps_bone_directions_and_replaces_lengths():
    rng = np.random.default_rng(7)
    P = SKEL.forward(random_valid_angles(rng, 100))
    other = Skeleton(SKEL.bone_lengths * rng.uniform(0.8, 1.2, N_JOINTS))
    Q = other.forward(SKEL.inverse(P))            # same angles, other lengths
    R = SKEL.forward(SKEL.inverse(Q))
    np.testing.assert_allclose(R, P, atol=1e-6)   # directions kept, lengths SKEL's again


def test_inverse_projects_invalid_poses_into_the_limits():
    rng = np.random.default_rng(8)
    noisy = SKEL.forward(random_valid_angles(rng, 300)) + rng.normal(0, 60, size=(300, N_JOINTS, 3))
    junk = rng.normal(0, 400, size=(300, N_JOINTS, 3))
    for poses in (noisy, junk):
        b = SKEL.inverse(poses)
        assert np.isfinite(b).all() and within_limits(b).all()
    # With the arm hanging, a forearm bent 40 degrees backward would need a half-turn twist (the
    # limits are -120..100 degrees): the closest valid pose is the straightest elbow (its limit).
    P = SKEL.forward(set_angles(LShoulder_abd=-90, LElbow_flex=60))
    P_bad = P.copy()
    backward = rotvec_to_matrix(np.radians(-40) * np.array([1.0, 0, 0]))   # -z toward -y
    P_bad[J["LWrist"]] = P[J["LElbow"]] + backward @ (P[J["LElbow"]] - P[J["LShoulder"]]) * (
        SKEL.bone_lengths[J["LWrist"]] / SKEL.bone_lengths[J["LElbow"]])
    b = SKEL.inverse(P_bad)
    assert b[angle_index("LElbow_flex")] == pytest.approx(ANGLE_LIMITS[angle_index("LElbow_flex"), 0], abs=1e-11)
    # ...and the rest of the pose is untouched.
    np.testing.assert_allclose(SKEL.forward(b)[:J["LWrist"]], P[:J["LWrist"]], atol=1e-9)


def test_inverse_fits_a_pelvis_that_is_not_symmetric():
    P = SKEL.tpose()
    P_bad = P.copy()
    P_bad[J["RHip"]] += [0, 20, 0]   # right hip 20 mm forward: the hip axis turns by half the angle
    b = SKEL.inverse(P_bad)
    yaw = np.degrees(b[2])
    assert yaw == pytest.approx(np.degrees(np.arctan2(20, SKEL.bone_lengths[1])) / 2, abs=1e-9)


# ---------------------------------------------------------------- constructors and errors
def test_constructors():
    rng = np.random.default_rng(9)
    P = SKEL.forward(random_valid_angles(rng, 11))
    P[3] *= 1.3   # an outlier frame does not move the median
    np.testing.assert_allclose(Skeleton.from_poses(P).bone_lengths, SKEL.bone_lengths, rtol=1e-12)
    s = Skeleton.from_height(1800.0)
    T = s.tpose()
    # Ankle to head top is 0.961 H (Drillis & Contini's ankle height is 0.039 H).
    assert T[J["Head"], 2] - T[J["RFoot"], 2] == pytest.approx(0.961 * 1800.0)
    np.testing.assert_allclose(s.bone_lengths, SKEL.bone_lengths * 1800 / 1700)
    assert s.bone_lengths[0] == 0.0


@pytest.mark.parametrize("call, match", [
    (lambda: Skeleton(np.ones(16)), "bone_lengths"),
    (lambda: Skeleton(np.r_[0.0, -np.ones(16)]), "bone_lengths"),
    (lambda: Skeleton.from_height(-3), "height_mm"),
    (lambda: SKEL.forward(np.zeros(N_ANGLES - 1)), "angles"),
    (lambda: SKEL.inverse(np.zeros((16, 3))), "joints"),
    (lambda: bone_lengths(np.zeros((17, 2))), "joints"),
    (lambda: Skeleton.from_poses(np.zeros((5, 16, 3))), "poses"),
])
def test_shape_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _kinematics_inputs(rng):
    """Angle arrays covering the limits, beyond them, zeros (signed too), tiny rotations and NaN."""
    lo, hi = ANGLE_LIMITS[:, 0], ANGLE_LIMITS[:, 1]
    zeros = rng.uniform(lo, hi, (500, N_ANGLES))
    zeros[rng.random(zeros.shape) < 0.3] = 0.0
    zeros[rng.random(zeros.shape) < 0.05] = -0.0
    return [rng.uniform(lo * 0.6, hi * 0.6, (2000, N_ANGLES)), rng.uniform(lo * 1.3, hi * 1.3, (3, 300, N_ANGLES)),
            np.zeros((4, N_ANGLES)), rng.normal(0, 1e-5, (300, N_ANGLES)), zeros, np.full((2, N_ANGLES), np.nan)]


def test_kinematics_reproduce_the_plain_formulation_byte_for_byte():
    # The restructured forward (component-major columns, torso and limbs by part) must give the
    # bits of the plain (...,3,3) formulation (tests/data/reference_kinematics.py).
    from tests.data.reference_kinematics import (reference_forward, reference_matrix_to_rotvec,
                                                 reference_rotvec_to_matrix)
    rng = np.random.default_rng(0)
    for skel in (SKEL, Skeleton(rng.uniform(50, 500, N_JOINTS))):
        for a in _kinematics_inputs(rng):
            assert skel.forward(a).tobytes() == reference_forward(skel.bone_lengths, a).tobytes()
    for v in (rng.normal(size=(3000, 3)), rng.normal(size=(2, 500, 3)) * 1e-9, np.zeros((3, 3)),
              np.full((2, 3), np.nan)):
        R = reference_rotvec_to_matrix(v)
        assert rotvec_to_matrix(v).tobytes() == R.tobytes()
        for M in (R, R + rng.normal(0, 1e-3, R.shape), np.swapaxes(R, -1, -2)):
            assert matrix_to_rotvec(M).tobytes() == reference_matrix_to_rotvec(M).tobytes()
    u = rng.normal(size=(3000, 3))            # half turns, where Shepperd's other candidates win
    turns = u / np.linalg.norm(u, axis=1, keepdims=True) * (np.pi - rng.uniform(0, 1e-6, (3000, 1)))
    M = reference_rotvec_to_matrix(turns)
    assert matrix_to_rotvec(M).tobytes() == reference_matrix_to_rotvec(M).tobytes()


def test_part_joints_equal_forward_and_hold_the_torso():
    from data.skeleton import PART_ANGLES, PARTS
    rng = np.random.default_rng(1)
    skel = Skeleton(rng.uniform(50, 500, N_JOINTS))
    a = rng.uniform(ANGLE_LIMITS[:, 0], ANGLE_LIMITS[:, 1], (6, 40, N_ANGLES))
    full = skel.forward(a)
    parts = skel.part_joints(a, PARTS)
    assert sorted(parts) == list(range(1, N_JOINTS))
    for j, p in parts.items():
        assert np.moveaxis(p, 0, -1).tobytes() == full[..., j, :].tobytes()
    for part in PARTS:                                         # one part alone: its joints only
        assert sorted(skel.part_joints(a, (part,))) == sorted(PARTS[part])
    torso = [angle_index(n) for n in PART_ANGLES["torso"]]
    a[..., torso] = a[:, :1, torso]                            # every particle holds image i's torso
    full = skel.forward(a)
    limbs = ("rleg", "lleg", "head", "larm", "rarm")
    held = skel.part_joints(a, limbs, torso=skel.torso_frames(a[:, 0]))
    for j in (j for part in limbs for j in PARTS[part]):
        np.testing.assert_array_equal(np.moveaxis(held[j], 0, -1), full[..., j, :])


def test_clip_angles_on_columns():
    rng = np.random.default_rng(2)
    a = rng.uniform(ANGLE_LIMITS[:, 0] * 1.5, ANGLE_LIMITS[:, 1] * 1.5, (50, N_ANGLES))
    cones = [[angle_index(n) for n in pair] for pair, _ in SWING_CONES]
    ix = angle_index
    for cols in (np.arange(N_ANGLES), np.array([ix(n) for n in ("LClavicle_prot", "LShoulder_flex", "LShoulder_abd",
                                                               "LShoulder_rot")]),
                 np.array([0, 1, 2, ix("LShoulder_flex")]), np.array([ix("RShoulder_flex"), ix("RShoulder_abd"), 4])):
        # the columns' box, then each cone whose two angles are both among the columns
        full = clip_angles(a)
        ref = np.clip(a, ANGLE_LIMITS[:, 0], ANGLE_LIMITS[:, 1])
        for pair in cones:
            if set(pair) <= set(cols.tolist()):
                ref[:, pair] = full[:, pair]
        np.testing.assert_array_equal(clip_angles(a[:, cols], cols), ref[:, cols])
    with pytest.raises(ValueError, match="columns"):
        clip_angles(a[:, :3], [0, 1])


# ---------------------------------------------------------------- the limits table
def test_limits_come_from_the_data_file_with_sources(tmp_path):
    import json
    rest, limits, cones = load_limits()
    assert [n for n, _, _ in limits] == list(ANGLE_NAMES)
    np.testing.assert_allclose(ANGLE_LIMITS, np.radians([(lo, hi) for _, lo, hi in limits]))
    assert [pair for pair, _ in SWING_CONES] == [pair for pair, _ in cones]
    table = json.load(open(sk.LIMITS_FILE))
    for row in table["angles"]:
        if not row["name"].startswith("root"):     # every limit names its source (and the sources exist)
            assert row["source"] and all(src.strip() in table["sources"] for src in row["source"].split(","))
    # issue 14's measured needs lie within (degrees): neck 78 from the thorax's axis, the head bone
    # 48-108 from the neck's, clavicles 14 and 25 protracted, a shoulder rotated 110 externally
    deg = {n: (lo, hi) for n, lo, hi in limits}
    assert deg["Neck_flex"][0] <= 78 - rest["neck_tilt_deg"] <= deg["Neck_flex"][1]
    for between in (48, 71, 108):
        assert deg["Head_flex"][0] <= rest["head_neck_angle_deg"] - between <= deg["Head_flex"][1]
    assert deg["LClavicle_prot"][1] >= 25 and deg["LShoulder_rot"][0] <= -110
    # a refit is a new file: bad ones are refused with the file's name
    bad = dict(table, angles=[r for r in table["angles"] if r["name"] != "Knee_flex"])
    path = tmp_path / "limits.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="limits.json.*Knee_flex"):
        load_limits(str(path))
    bad = dict(table, angles=[dict(r, lower=5) if r["name"] == "Knee_flex" else r for r in table["angles"]])
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="lower < 0 < upper"):
        load_limits(str(path))
    path.write_text("{")
    with pytest.raises(ValueError, match="not a readable limits table"):
        load_limits(str(path))


def test_from_height_puts_the_nose_in_front_of_the_thorax():
    s = Skeleton.from_height(1750.0)
    T = s.tpose()
    forward = T[J["Neck/Nose"], 1] - T[J["Thorax"], 1]
    assert 80 <= forward <= 100                                   # issue 14: 70-107 mm on real poses
    assert T[J["Head"], 1] < T[J["Neck/Nose"], 1]                 # the head top behind the nose
    # the Drillis & Contini heights are kept: nose 0.903 H, head top 1.0 H above the floor
    floor = T[J["RFoot"], 2] - 0.039 * 1750
    assert T[J["Neck/Nose"], 2] - floor == pytest.approx(0.903 * 1750)
    assert T[J["Head"], 2] - floor == pytest.approx(1750)

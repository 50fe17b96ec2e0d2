import numpy as np
import pytest

from data import h36m
from data import skeleton as sk
from data.synth import motion
from data.synth.subjects import SubjectProfile


# ---------------------------------------------------------------- motion
@pytest.fixture(scope="module")
def motions():
    profile = SubjectProfile("S5", 0)
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


# ---------------------------------------------------------------- subjects
def test_subject_profiles_differ_and_are_seeded():
    heights = [SubjectProfile(s, 0).height for s in h36m.ALL_SUBJECTS]
    assert 1550 <= min(heights) and max(heights) <= 1900 and max(heights) - min(heights) > 200
    a, b = SubjectProfile("S9", 0), SubjectProfile("S9", 0)
    np.testing.assert_array_equal(a.skeleton.bone_lengths, b.skeleton.bone_lengths)
    np.testing.assert_array_equal(a.style.albedo, b.style.albedo)
    c = SubjectProfile("S9", 1)
    assert not np.array_equal(a.style.albedo, c.style.albedo)
    # Left and right bones of a subject have the same length.
    bl = a.skeleton.bone_lengths
    for left, right in zip(h36m.LEFT_JOINTS, h36m.RIGHT_JOINTS):
        assert bl[left] == bl[right]


def test_motions_have_real_neck_head_and_shoulder_girdle_geometry(motions):
    """Issue 14: on real poses the Thorax->Nose and Nose->Head bones meet at 48-108 degrees (71
    standing), the nose 70-107 mm in front of the thorax; the clavicles protract (14 degrees
    walking the dog). The synthetic motions have that geometry and move the clavicles."""
    ms, profile = motions
    between, nose_forward, prot = [], [], []
    for m in ms.values():
        J = m["joints"]
        u, v = J[:, 9] - J[:, 8], J[:, 10] - J[:, 9]
        between.append(np.degrees(np.arccos(np.sum(u * v, -1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1))))
        right = J[:, 14] - J[:, 11]
        right /= np.linalg.norm(right, axis=-1, keepdims=True)
        up = J[:, 8] - J[:, 7]
        up -= np.sum(up * right, -1, keepdims=True) * right
        forward = np.cross(up / np.linalg.norm(up, axis=-1, keepdims=True), right)
        nose_forward.append(np.sum(u * forward, -1))
        prot.append(np.degrees(m["angles"][:, [sk.angle_index("LClavicle_prot"), sk.angle_index("RClavicle_prot")]]))
    between, nose_forward, prot = np.concatenate(between), np.concatenate(nose_forward), np.concatenate(prot)
    assert 55 <= np.median(between) <= 75 and np.percentile(between, 1) > 40 and np.percentile(between, 99) < 110
    scale = profile.height / 1750
    assert 80 * scale <= np.median(nose_forward) <= 120 * scale and np.percentile(nose_forward, 1) > 40 * scale
    assert prot.std() > 3 and np.mean(np.abs(prot) > 10) > 0.05 and np.abs(prot).max() <= 30 + 1e-6

"""Kinematic model of the 17-joint Human3.6M skeleton: joint angles, human limits, FK and IK.

Body frame (root orientation zero): x = the subject's right, y = forward (the subject faces +y),
z = up; right-handed, millimetres. Zero angles give the neutral T pose: upright, legs straight
down, arms horizontal along -x (left) and +x (right), the root (Hip) at the origin, the neck and
head in their rest geometry (below).

The rest geometry and the angle limits are data, with their sources: skeleton_limits.json beside
this module (REST_GEOMETRY, ANGLE_LIMITS, SWING_CONES are read from it; docs/apf.md has the table).

Parameterisation (docs/apf.md has the full table). Every rotation is the exponential of a
rotation vector whose components are linear in the angles, so one batched Rodrigues call builds
all of them:
  * root: a rotation vector (axis * angle, |r| <= pi from `inverse`); it absorbs any camera
    rotation, so a pose in camera coordinates is fine.
  * pelvis: rigid; RHip, LHip at +-x times their bone lengths. The pelvis frame is fixed by the
    two hips (x) and the Hip->Spine bone (z after removing its x component). Pelvic tilt about the
    hip axis is therefore confounded with lumbar flexion and hip flexion: it is put in the root.
  * Lumbar_lat: side bend of the Hip->Spine bone (the only part of its direction the pelvis frame
    leaves free).
  * swing joints (2 DOF): the bone's direction is its rest direction u0 rotated by a swing vector
    perpendicular to u0 (components = the two angles). Singular only at -u0, which the limits
    exclude: u0 is down for the thighs, lateral for the upper arms (the T pose), up for the trunk.
  * ball joints (hips, shoulders) add a twist about u0, observable only through the child of the
    next hinge (knee, elbow); it is unobservable when that hinge is straight (inverse returns the
    atan2 of the residual, which does not move any joint).
  * hinges (knees, elbows): 1 DOF, flexion direction at zero twist backward (knee) / forward
    (elbow).
  * Spine: swing (flex, lat) of Spine->Thorax plus the upper-body twist.
  * clavicles (Thorax->Shoulder): protraction (a turn about the thorax's vertical, > 0 forward)
    then elevation (> 0 up) from the horizontal lateral rest. Each upper arm hangs from its
    clavicle's protraction frame (the thorax turned by the protraction, without the elevation),
    and the neck from the thorax turned by the mean of the two (the shoulder line's frame). Only
    the clavicles' azimuths t - prot_L and t + prot_R (t = Spine_twist) are observable in the
    joints, and every child depends on those alone: a twist exchanged with an asymmetric
    protraction moves no joint. inverse takes the twist that protracts both clavicles alike,
    moved into the range where the twist and both protractions are within their limits when it
    lies outside (so a pose within the limits comes back exactly).
  * neck (Thorax->Neck/Nose) and head (Neck/Nose->Head): swings from a rest geometry that fits
    real people (REST_GEOMETRY): the neck bone tilted forward (the nose in front of the thorax)
    and the head bone at an angle to it (the head top above and behind the nose). A twist about
    a bone whose child is a single point is unobservable.
  * right limbs are the mirror images (x -> -x) of the left ones, so equal angles give mirrored
    poses and the limits table is shared. Signs: flex > 0 forward (knee/elbow flex > 0 bends),
    abd > 0 away from the midline (shoulder abd > 0 raises the arm above the horizontal),
    rot > 0 internal rotation, lat > 0 toward the subject's right for the midline joints,
    twist > 0 turns the upper body to the left, elev > 0 raises the shoulder, prot > 0 moves it
    forward.

forward and inverse are vectorised over any leading dimensions and work in float64.
"""
import json
import os

import numpy as np

from data.h36m import JOINT_NAMES, N_JOINTS, PARENTS

_PARENTS = np.array(PARENTS)
_DEG = np.pi / 180.0
LIMITS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "skeleton_limits.json")

# The angle vector's layout (the model's parameterisation; the limits are data, LIMITS_FILE).
_LAYOUT = (
    "root_x", "root_y", "root_z",
    "Lumbar_lat",
    "RHip_flex", "RHip_abd", "RHip_rot", "RKnee_flex",
    "LHip_flex", "LHip_abd", "LHip_rot", "LKnee_flex",
    "Spine_flex", "Spine_lat", "Spine_twist",
    "Neck_flex", "Neck_lat", "Head_flex", "Head_lat",
    "LClavicle_elev", "LClavicle_prot", "LShoulder_flex", "LShoulder_abd", "LShoulder_rot", "LElbow_flex",
    "RClavicle_elev", "RClavicle_prot", "RShoulder_flex", "RShoulder_abd", "RShoulder_rot", "RElbow_flex",
)


def _table_name(name):
    """The limits table's row of an angle: limbs without their side (LHip_flex -> Hip_flex)."""
    return name[1:] if name[0] in "LR" and name[1].isupper() else name


def load_limits(path=LIMITS_FILE):
    """(rest {"neck_tilt_deg", "head_neck_angle_deg"}, limits ((name, lower, upper) degrees, in the
    angle vector's order), cones (((angle a, angle b), radius degrees), left then right)) from a
    limits file (skeleton_limits.json's format). ValueError naming the file for a bad one."""
    try:
        with open(path) as f:
            table = json.load(f)
        rows = {row["name"]: (float(row["lower"]), float(row["upper"])) for row in table["angles"]}
        rest = {k: float(table["rest"][k]) for k in ("neck_tilt_deg", "head_neck_angle_deg")}
        cones = [(tuple(c["angles"]), float(c["radius"])) for c in table.get("cones", [])]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a readable limits table ({e})") from None
    wanted = {_table_name(n) for n in _LAYOUT}
    if set(rows) != wanted:
        raise ValueError(f"{path}: the angles {sorted(wanted - set(rows))} are missing and {sorted(set(rows) - wanted)} "
                         "unknown")
    bad = [n for n, (lo, hi) in rows.items() if not (np.isfinite(lo) and np.isfinite(hi) and lo < 0 < hi)]
    if bad:
        raise ValueError(f"{path}: limits of {bad} must be finite with lower < 0 < upper (zero, the rest pose, valid)")
    if not 0 < rest["neck_tilt_deg"] < rest["head_neck_angle_deg"] < 180:
        raise ValueError(f"{path}: rest geometry needs 0 < neck_tilt_deg < head_neck_angle_deg < 180")
    sided = []
    for (a, b), radius in cones:
        if "L" + a not in _LAYOUT or "L" + b not in _LAYOUT or not 0 < radius < 180:
            raise ValueError(f"{path}: a cone needs two limb angles and a radius in (0, 180), got {(a, b, radius)}")
        sided += [((side + a, side + b), radius) for side in "LR"]
    return rest, tuple((n,) + rows[_table_name(n)] for n in _LAYOUT), tuple(sided)


_REST_DEG, _LIMITS_DEG, _CONES_DEG = load_limits()
ANGLE_NAMES = _LAYOUT
N_ANGLES = len(ANGLE_NAMES)
ANGLE_LIMITS = np.array([(lo, hi) for _, lo, hi in _LIMITS_DEG], dtype=np.float64) * _DEG
ANGLE_LIMITS.flags.writeable = False
ROOT_ANGLES = slice(0, 3)
_INDEX = {name: i for i, name in enumerate(ANGLE_NAMES)}
# Cone limits on the shoulder swings (the box alone would admit a 186 degree swing at its corner,
# which wraps around and points the arm through the chest): |(flex, abd)| <= the radius.
SWING_CONES = tuple((pair, radius * _DEG) for pair, radius in _CONES_DEG)
_CONES = tuple(([_INDEX[a], _INDEX[b]], radius) for (a, b), radius in SWING_CONES)
# Rest geometry (radians): the Thorax->Nose bone tilted forward by neck_tilt from the thorax's up
# axis, the Nose->Head bone at head_neck_angle to it (leaning back by the difference).
REST_GEOMETRY = {k: v * _DEG for k, v in _REST_DEG.items()}


def angle_index(name):
    """Index of an angle in the joint-angle vector, e.g. angle_index("LElbow_flex") -> 24."""
    try:
        return _INDEX[name]
    except KeyError:
        raise ValueError(f"unknown angle {name!r}; valid names are {', '.join(ANGLE_NAMES)}") from None


# ---------------------------------------------------------------- elementary rotations
# Each elementary rotation is exp([v]x) with v linear in the angles: v = _A[e] @ angles.
# Left-side and midline rotations are written out; a right-side one is the mirror image under
# M = diag(-1, 1, 1): M exp([v]x) M = exp([(v_x, -v_y, -v_z)]x).
_X, _Y, _Z = np.eye(3)
_MIRROR_VEC = np.array([-1.0, 1.0, 1.0])       # mirrors a vector (x -> -x)
_MIRROR_ROTVEC = np.array([1.0, -1.0, -1.0])   # mirrors a rotation vector


def _rotation_rows(terms, mirror=False):
    rows = np.zeros((3, N_ANGLES))
    for name, axis_vector in terms:
        rows[:, _INDEX[name]] += axis_vector
    return rows * _MIRROR_ROTVEC[:, None] if mirror else rows


def _limb_rotations(side):
    """Elementary rotations of one side's hip, knee, clavicle, shoulder and elbow."""
    m = side == "R"
    return {
        # Thigh rest direction -z: a rotation about +x swings it forward, about +y outward (-x).
        "hip_swing": _rotation_rows([(side + "Hip_flex", _X), (side + "Hip_abd", _Y)], m),
        # Internal rotation of the left thigh turns its front toward +x: rotation about -z.
        "hip_twist": _rotation_rows([(side + "Hip_rot", -_Z)], m),
        # The shank bends backward (-y): rotation about -x.
        "knee": _rotation_rows([(side + "Knee_flex", -_X)], m),
        # Clavicle rest direction -x: a rotation about -z turns it forward (protraction; the
        # upper arm hangs from this frame), then one about +y raises it.
        "clavicle_yaw": _rotation_rows([(side + "Clavicle_prot", -_Z)], m),
        "clavicle": _rotation_rows([(side + "Clavicle_elev", _Y)], m),
        # Upper-arm rest direction -x: about +y raises it (abd), about -z swings it forward (flex).
        "shoulder_swing": _rotation_rows([(side + "Shoulder_abd", _Y), (side + "Shoulder_flex", -_Z)], m),
        # Internal rotation: about the rest direction -x (the flexed forearm turns downward in T).
        "shoulder_twist": _rotation_rows([(side + "Shoulder_rot", -_X)], m),
        # The forearm bends forward (+y): rotation about -z.
        "elbow": _rotation_rows([(side + "Elbow_flex", -_Z)], m),
    }


# Rest directions of the neck and head bones in their parent frames, tilted in the sagittal (y-z)
# plane, and the lateral axes of their swings (perpendicular to the bone, in that plane): a swing
# vector -flex x + lat y_rest keeps the rest tilt's meaning (flex > 0 forward, lat > 0 toward +x).
_NECK_TILT = REST_GEOMETRY["neck_tilt_deg"]
_HEAD_BACK = REST_GEOMETRY["head_neck_angle_deg"] - _NECK_TILT    # the head bone's lean back from up
_NECK_REST = np.array([0.0, np.sin(_NECK_TILT), np.cos(_NECK_TILT)])
_HEAD_REST = np.array([0.0, -np.sin(_HEAD_BACK), np.cos(_HEAD_BACK)])
_NECK_LAT = np.array([0.0, np.cos(_NECK_TILT), -np.sin(_NECK_TILT)])
_HEAD_LAT = np.array([0.0, np.cos(_HEAD_BACK), np.sin(_HEAD_BACK)])
for _v in (_NECK_REST, _HEAD_REST):
    _v.flags.writeable = False
_LEFT, _RIGHT = _limb_rotations("L"), _limb_rotations("R")
_ELEMENTS = {
    "root": _rotation_rows([("root_x", _X), ("root_y", _Y), ("root_z", _Z)]),
    "lumbar": _rotation_rows([("Lumbar_lat", _Y)]),
    # Trunk rest direction +z: about -x bends forward, about +y bends toward the right (+x).
    "spine_swing": _rotation_rows([("Spine_flex", -_X), ("Spine_lat", _Y)]),
    "spine_twist": _rotation_rows([("Spine_twist", _Z)]),
    # The neck hangs from the shoulder line's frame: the thorax turned by the mean of the two
    # clavicles' protraction turns (-prot_L and +prot_R about z).
    "neck_yaw": _rotation_rows([("RClavicle_prot", 0.5 * _Z), ("LClavicle_prot", -0.5 * _Z)]),
    "neck": _rotation_rows([("Neck_flex", -_X), ("Neck_lat", _NECK_LAT)]),
    "head": _rotation_rows([("Head_flex", -_X), ("Head_lat", _HEAD_LAT)]),
}
for _side, _table in (("R", _RIGHT), ("L", _LEFT)):
    for _key, _rows in _table.items():
        _ELEMENTS[_side + "_" + _key] = _rows
_ELEMENT_NAMES = tuple(_ELEMENTS)
_E = {name: i for i, name in enumerate(_ELEMENT_NAMES)}
_A = np.stack([_ELEMENTS[name] for name in _ELEMENT_NAMES])  # (E, 3, N_ANGLES)
# forward() builds the general rotations (root and swings) with Rodrigues and applies the
# single-axis ones (twists, hinges, lumbar, clavicles) by mixing two frame columns (_Chain).
_AXIS_ELEMENTS = tuple(n for n in _ELEMENT_NAMES if np.count_nonzero(np.abs(_ELEMENTS[n]).sum(axis=1)) == 1)
_GENERAL_ELEMENTS = tuple(n for n in _ELEMENT_NAMES if n not in _AXIS_ELEMENTS)
_GENERAL_T = np.ascontiguousarray(np.concatenate([_ELEMENTS[n] for n in _GENERAL_ELEMENTS]).T)
_AXIS_OF = {n: int(np.argmax(np.abs(_ELEMENTS[n]).sum(axis=1))) for n in _AXIS_ELEMENTS}
_AXIS_T = np.ascontiguousarray(np.stack([_ELEMENTS[n][_AXIS_OF[n]] for n in _AXIS_ELEMENTS]).T)
_G = {n: i for i, n in enumerate(_GENERAL_ELEMENTS)}
_S = {n: i for i, n in enumerate(_AXIS_ELEMENTS)}
_OTHER_AXES = {0: (1, 2), 1: (2, 0), 2: (0, 1)}   # (i, j) with R_k[i, j] = -sin, R_k[j, i] = +sin

# Rest directions (left side / midline) in the parent's frame, and hinge flexion directions.
_THIGH_REST, _ARM_REST, _TRUNK_REST = -_Z, -_X, _Z
_KNEE_BEND, _ELBOW_BEND = -_Y, _Y


# ---------------------------------------------------------------- rotation helpers
def rotvec_to_matrix(v):
    """Rotation vectors (...,3) (axis * angle, radians) -> rotation matrices (...,3,3) (Rodrigues)."""
    v = np.asarray(v, dtype=np.float64)
    if v.shape[-1:] != (3,):
        raise ValueError(f"v: expected a last dimension of 3, got shape {v.shape}")
    th2 = np.einsum("...i,...i->...", v, v)
    th = np.sqrt(th2)
    small = th < 1e-4
    c = np.cos(th)
    if small.any():
        safe = np.where(small, 1.0, th)
        # Series below 1e-4 rad: sin(t)/t and (1-cos t)/t^2 lose digits to cancellation there.
        a = np.where(small, 1.0 - th2 / 6.0, np.sin(safe) / safe)
        b = np.where(small, 0.5 - th2 / 24.0, (1.0 - np.cos(safe)) / (safe * safe))
    else:   # the same values without the series (safe would equal th, cos(safe) c)
        a = np.sin(th) / th
        b = (1.0 - c) / (th * th)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    bx, by, bz, ax, ay, az = b * x, b * y, b * z, a * x, a * y, a * z
    # Written entry by entry into one preallocated array: the particle filter builds hundreds of
    # thousands of these per layer, and stacking temporaries cost twice as much.
    R = np.empty(v.shape[:-1] + (3, 3))
    R[..., 0, 0] = c + bx * x
    R[..., 0, 1] = bx * y - az
    R[..., 0, 2] = bx * z + ay
    R[..., 1, 0] = bx * y + az
    R[..., 1, 1] = c + by * y
    R[..., 1, 2] = by * z - ax
    R[..., 2, 0] = bx * z - ay
    R[..., 2, 1] = by * z + ax
    R[..., 2, 2] = c + bz * z
    return R


# Quaternion candidate k (Shepperd): the numerator of component c among (s21, s02, s10, p01, p02,
# p12) below; its own component (the diagonal, 0 here) is big_k instead.
_QUAT_NUM = np.array([[0, 0, 1, 2], [0, 0, 3, 4], [1, 3, 0, 5], [2, 4, 5, 0]])


def matrix_to_rotvec(R):
    """Rotation matrices (...,3,3) -> rotation vectors (...,3) with norm <= pi.

    Through the quaternion (Shepperd's method: the largest of w, x, y, z is computed from the
    diagonal), which stays accurate near a half turn where the trace formula does not.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"R: expected trailing dimensions (3, 3), got shape {R.shape}")
    r00, r11, r22 = R[..., 0, 0], R[..., 1, 1], R[..., 2, 2]
    s21, s02, s10 = R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]
    p01, p02, p12 = R[..., 0, 1] + R[..., 1, 0], R[..., 0, 2] + R[..., 2, 0], R[..., 1, 2] + R[..., 2, 1]
    diag = np.stack([r00 + r11 + r22, r00 - r11 - r22, -r00 + r11 - r22, -r00 - r11 + r22], axis=-1)
    big = np.sqrt(np.maximum(1.0 + diag, 0.0)) / 2.0   # |w|, |x|, |y|, |z| candidates
    d4 = 4.0 * np.maximum(big, 1e-300)
    # Candidate k is big_k at component k and numerator / d4_k elsewhere (numerators by _QUAT_NUM);
    # only the picked one is formed.
    pick = np.argmax(diag, axis=-1)[..., None]
    num = np.take_along_axis(np.stack([s21, s02, s10, p01, p02, p12], axis=-1), _QUAT_NUM[pick[..., 0]], axis=-1)
    q = np.where(pick == np.arange(4), np.take_along_axis(big, pick, axis=-1),
                 num / np.take_along_axis(d4, pick, axis=-1))
    q = np.where(q[..., :1] < 0, -q, q)                  # w >= 0: angle in [0, pi]
    w, qv = q[..., 0], q[..., 1:]
    n = np.linalg.norm(qv, axis=-1)
    small = n < 1e-8
    # 2 atan2(n, w) / n; near the identity (n -> 0, w -> 1) it tends to 2 / w.
    scale = np.where(small, 2.0 / np.maximum(w, 1e-300), 2.0 * np.arctan2(n, w) / np.where(small, 1.0, n))
    return qv * scale[..., None]


def _normalize(v, eps=1e-12):
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, eps)


def _dot(a, b):
    return np.einsum("...i,...i->...", a, b)


def _local(F, v):
    """Components of world vectors v (...,3) in frames F (...,3,3) (columns are the frame axes)."""
    return np.einsum("...ji,...j->...i", F, v)


def _swing_vector(u0, v):
    """Swing rotation vector (...,3), perpendicular to the unit axis u0, taking u0 onto unit v."""
    axis = np.cross(u0, v)
    s = np.linalg.norm(axis, axis=-1)
    theta = np.arctan2(s, _dot(v, u0))
    scale = np.where(s > 1e-12, theta / np.maximum(s, 1e-12), 1.0)
    return axis * scale[..., None]


def _clip(ang, names, clip=True):
    if not clip:
        return ang
    idx = [_INDEX[n] for n in names]
    return np.clip(ang, ANGLE_LIMITS[idx, 0], ANGLE_LIMITS[idx, 1])


def _hinge_twist(w, u0, bend, lim_e, lim_t, clip=True):
    """Hinge angle e and twist t with w = Twist(t) Hinge(e) u0, both within limits.

    w: (...,3) unit child-bone directions in the swung frame; u0: rest direction; bend: the
    flexion direction at zero twist. (e, t) and (-e, t + pi) give the same direction: the one
    whose clipped version lies closer to w is returned (a slightly hyperextended knee stays a
    small negative flexion instead of becoming a flexion twisted by half a turn). clip=False:
    the same choice, returned unclipped.
    """
    side = np.cross(u0, bend)
    p, q, c = _dot(w, bend), _dot(w, side), _dot(w, u0)
    e1 = np.arctan2(np.hypot(p, q), c)
    t1 = np.arctan2(q, p)
    e2, t2 = -e1, np.where(t1 > 0, t1 - np.pi, t1 + np.pi)

    def clipped_miss(e, t):
        # Squared distance from the vector itself, not 1 - cos: the cosine loses half the digits.
        e, t = np.clip(e, *lim_e), np.clip(t, *lim_t)
        h = (np.cos(e)[..., None] * u0
             + np.sin(e)[..., None] * (np.cos(t)[..., None] * bend + np.sin(t)[..., None] * side))
        return e, t, np.sum((h - w) ** 2, axis=-1)

    raw = (e1, t1, e2, t2)
    e1, t1, miss1 = clipped_miss(e1, t1)
    e2, t2, miss2 = clipped_miss(e2, t2)
    first = miss1 <= miss2
    if not clip:
        e1, t1, e2, t2 = raw
    return np.where(first, e1, e2), np.where(first, t1, t2)


def _check_angles(angles, name="angles"):
    a = np.asarray(angles, dtype=np.float64)
    if a.ndim < 1 or a.shape[-1] != N_ANGLES:
        raise ValueError(f"{name}: expected a last dimension of {N_ANGLES}, got shape {a.shape}")
    return a


def _check_joints(joints, name="joints"):
    j = np.asarray(joints, dtype=np.float64)
    if j.ndim < 2 or j.shape[-2:] != (N_JOINTS, 3):
        raise ValueError(f"{name}: expected trailing dimensions ({N_JOINTS}, 3), got shape {j.shape}")
    return j


def _clip_cone(pair, radius):
    """Scale swing pairs (...,2) down to norm <= radius (the box contains 0, so it stays satisfied)."""
    n = np.linalg.norm(pair, axis=-1, keepdims=True)
    return pair * np.minimum(1.0, radius / np.maximum(n, 1e-300))


def clip_angles(angles, columns=None):
    """Angles (...,N_ANGLES) clipped to ANGLE_LIMITS, then the shoulder swings to SWING_CONES.

    columns: angle indices (k,); angles (...,k) are then those angles, clipped alike (a cone only
    where both of its angles are among them).
    """
    if columns is None:
        a = np.clip(_check_angles(angles), ANGLE_LIMITS[:, 0], ANGLE_LIMITS[:, 1])
        for idx, radius in _CONES:
            a[..., idx] = _clip_cone(a[..., idx], radius)
        return a
    columns = np.asarray(columns, dtype=np.intp)
    a = np.asarray(angles, dtype=np.float64)
    if a.ndim < 1 or a.shape[-1] != columns.size:
        raise ValueError(f"angles: expected a last dimension of {columns.size} (the columns), got shape {a.shape}")
    a = np.clip(a, ANGLE_LIMITS[columns, 0], ANGLE_LIMITS[columns, 1])
    where = {int(c): k for k, c in enumerate(columns)}
    for idx, radius in _CONES:
        if all(i in where for i in idx):
            pair = [where[i] for i in idx]
            a[..., pair] = _clip_cone(a[..., pair], radius)
    return a


def within_limits(angles, tol=1e-9):
    """(...,) bool: every angle within ANGLE_LIMITS and SWING_CONES (widened by tol radians)."""
    a = _check_angles(angles)
    ok = np.all((a >= ANGLE_LIMITS[:, 0] - tol) & (a <= ANGLE_LIMITS[:, 1] + tol), axis=-1)
    for idx, radius in _CONES:
        ok &= np.linalg.norm(a[..., idx], axis=-1) <= radius + tol
    return ok


def bone_lengths(joints):
    """Bone lengths (...,17) of poses (...,17,3): entry j is |joint j - parent(j)|, entry 0 is 0."""
    j = _check_joints(joints)
    out = np.linalg.norm(j - j[..., np.maximum(_PARENTS, 0), :], axis=-1)
    out[..., 0] = 0.0
    return out


# Drillis & Contini (1966) segment lengths as fractions of body height H, as tabulated in
# Winter, "Biomechanics and Motor Control of Human Movement" (Fig. 4.1): thigh 0.245, shank 0.246,
# upper arm 0.186, forearm 0.146, hip width 0.191, shoulder width 0.259; heights of the hip
# (greater trochanter) 0.530, shoulder 0.818, chin 0.870, eyes 0.936. Mapped onto the Human3.6M
# joints: Hip->R/LHip half the hip width; Thorax->R/LShoulder half the shoulder width; the trunk
# (hip height to shoulder height, 0.288) split equally at Spine; Neck/Nose (the nose) halfway
# between chin and eyes (0.903); Head at the top of the head (1.0). The neck and head bones keep
# those heights in their rest geometry (tilted: REST_GEOMETRY), so they are the heights over the
# cosines of the tilts, and the nose lies 0.085 H tan(neck tilt) in front of the thorax line. The
# resulting T pose stands 0.961 H from ankle to head top (the ankle is 0.039 H above the floor).
_HEIGHT_RATIOS = {
    "RHip": 0.191 / 2, "RKnee": 0.245, "RFoot": 0.246,
    "LHip": 0.191 / 2, "LKnee": 0.245, "LFoot": 0.246,
    "Spine": 0.288 / 2, "Thorax": 0.288 / 2,
    "Neck/Nose": (0.903 - 0.818) / np.cos(_NECK_TILT), "Head": (1.0 - 0.903) / np.cos(_HEAD_BACK),
    "LShoulder": 0.259 / 2, "LElbow": 0.186, "LWrist": 0.146,
    "RShoulder": 0.259 / 2, "RElbow": 0.186, "RWrist": 0.146,
}


# Body parts of forward(): the joints each part computes (ascending) and the angles that move them
# once its parent frame is given (the torso hangs from the root; legs from the root frame, arms and
# head from the thorax frame). Skeleton.part_joints computes some parts only.
PARTS = {
    "torso": (1, 4, 7, 8, 11, 14), "rleg": (2, 3), "lleg": (5, 6), "head": (9, 10), "larm": (12, 13),
    "rarm": (15, 16),
}
_PART_ELEMENTS = {   # part -> (general elements, single-axis elements)
    "torso": (("root", "spine_swing"), ("lumbar", "spine_twist", "R_clavicle_yaw", "R_clavicle", "L_clavicle_yaw",
                                        "L_clavicle", "neck_yaw")),
    "head": (("neck", "head"), ()),
    **{side.lower() + "leg": ((side + "_hip_swing",), (side + "_hip_twist", side + "_knee")) for side in "RL"},
    **{side.lower() + "arm": ((side + "_shoulder_swing",), (side + "_shoulder_twist", side + "_elbow"))
       for side in "RL"},
}
PART_ANGLES = {part: tuple(ANGLE_NAMES[i] for i in range(N_ANGLES)
                           if any(_ELEMENTS[e][:, i].any() for group in elements for e in group))
               for part, elements in _PART_ELEMENTS.items()}
# The frame each part other than the legs (which hang from the root frame) hangs from, given by
# the torso: the shoulder line's frame for the head, each clavicle's protraction frame for its arm.
_BASES = {"head": "neck_yaw", "larm": "L_clavicle_yaw", "rarm": "R_clavicle_yaw"}


def _last_first(v, k=1):
    """The view of v with its last k axes moved to the front (reversed when k = 2)."""
    n = v.ndim
    return v.transpose(tuple(range(n - 1, n - 1 - k, -1)) + tuple(range(n - k)))


def _columns(M):
    """Frames (...,3,3) -> their columns, component-major: (3 columns, 3 components, ...), contiguous."""
    return np.ascontiguousarray(_last_first(M, 2))


def _frames(columns):
    """The inverse of _columns: columns {0, 1, 2: (3, ...)} -> frames (...,3,3)."""
    M = np.empty(columns[0].shape[1:] + (3, 3))
    for k in range(3):
        _last_first(M[..., :, k])[...] = columns[k]
    return M


class _Chain:
    """forward() by body parts. The elementary rotations of `parts` are built from angles a
    (...,N_ANGLES) as for all parts (Rodrigues on the same rotation vectors, cos/sin of the same
    angles), and every joint by the same operations in the same order, so a part's joints equal
    forward()'s bit for bit. Frames are (...,3,3) where a 3x3 product (BLAS) takes or gives them;
    the rest works on component-major columns and joints (3, ...), whose elementwise operations
    stream (in the (...,3,3) layout each touches a stride-3 column and costs several times more):
    forward() is the particle filter's inner loop. Single-axis rotations are applied by mixing two
    frame columns, which costs a fraction of a 3x3 product."""

    def __init__(self, bone_lengths, a, parts):
        self.bl = bone_lengths
        general = [e for q in PARTS if q in parts for e in _PART_ELEMENTS[q][0]]
        axis = [e for q in PARTS if q in parts for e in _PART_ELEMENTS[q][1]]
        v = (a @ _GENERAL_T).reshape(a.shape[:-1] + (len(_GENERAL_ELEMENTS), 3))
        theta = a @ _AXIS_T
        if len(general) < len(_GENERAL_ELEMENTS):
            v = v[..., [_G[e] for e in general], :]
        else:
            general = _GENERAL_ELEMENTS
        if len(axis) < len(_AXIS_ELEMENTS):
            theta = theta[..., [_S[e] for e in axis]]
        else:
            axis = _AXIS_ELEMENTS
        G = rotvec_to_matrix(v)
        self._G = {e: G[..., i, :, :] for i, e in enumerate(general)}
        theta = np.ascontiguousarray(_last_first(theta))     # (axis elements, ...)
        self.cos, self.sin = np.cos(theta), np.sin(theta)
        self._s = {e: i for i, e in enumerate(axis)}

    def general(self, name):
        return self._G[name]

    def turn(self, F, name, need=(0, 1, 2)):
        """Columns {k: (3, ...)} of F @ R, R the single-axis rotation `name` and F columns (3, 3, ...)
        (or such a dict); only the columns `need`."""
        k, m = _AXIS_OF[name], self._s[name]
        i, j = _OTHER_AXES[k]
        c, s = self.cos[m], self.sin[m]
        out = {k: F[k]} if k in need else {}
        if i in need:
            out[i] = c * F[i] + s * F[j]
        if j in need:
            out[j] = c * F[j] - s * F[i]
        return out

    def torso(self, bases=tuple(_BASES)):
        """(R0 the root frame (...,3,3), {part: the frame (...,3,3) it hangs from} for the parts
        `bases` among "head", "larm", "rarm", {joint: (3, ...)} of PARTS["torso"])."""
        bl = self.bl
        R0 = self.general("root")
        r0 = _columns(R0)
        # Pelvis: the hips along the frame's x axis (the right hip on +x).
        J = {1: bl[1] * r0[0], 4: -bl[4] * r0[0]}
        f7 = self.turn(r0, "lumbar")
        J[7] = bl[7] * f7[2]
        g8 = _columns(_frames(f7) @ self.general("spine_swing"))
        J[8] = J[7] + bl[8] * g8[2]
        f8 = self.turn(g8, "spine_twist")
        frames = {}
        for side, sh in (("R", 14), ("L", 11)):
            sign = 1.0 if side == "R" else -1.0   # x of the rest directions after mirroring
            yaw = self.turn(f8, side + "_clavicle_yaw")
            J[sh] = J[8] + sign * bl[sh] * self.turn(yaw, side + "_clavicle", need=(0,))[0]
            if side.lower() + "arm" in bases:
                frames[side.lower() + "arm"] = _frames(yaw)
        if "head" in bases:
            frames["head"] = _frames(self.turn(f8, "neck_yaw"))
        return R0, frames, J

    def joints(self, parts, torso=None):
        """{joint: (3, ...)} of `parts`; torso: a torso() of base angles, given a particle axis here."""
        if torso is None:
            R0, F, T = self.torso([q for q in _BASES if q in parts])
        else:
            R0 = torso[0][..., None, :, :]
            F = {q: f[..., None, :, :] for q, f in torso[1].items()}
            T = {j: p[..., None] for j, p in torso[2].items()}
        bl = self.bl
        J = dict(T) if "torso" in parts else {}
        if "head" in parts:
            F9 = F["head"] @ self.general("neck")
            J[9] = T[8] + bl[9] * _last_first(F9 @ _NECK_REST)
            head = np.einsum("...ij,...j->...i", F9, self.general("head") @ _HEAD_REST)
            J[10] = J[9] + bl[10] * _last_first(head)
        for side, hip, knee, foot, sh, elbow, wrist in (("R", 1, 2, 3, 14, 15, 16),
                                                       ("L", 4, 5, 6, 11, 12, 13)):
            sign = 1.0 if side == "R" else -1.0
            if side.lower() + "leg" in parts:
                thigh = _columns(R0 @ self.general(side + "_hip_swing"))
                J[knee] = T[hip] - bl[knee] * thigh[2]
                thigh = self.turn(thigh, side + "_hip_twist", need=(1, 2))   # the knee mixes columns 1, 2
                J[foot] = J[knee] - bl[foot] * self.turn(thigh, side + "_knee", need=(2,))[2]
            if side.lower() + "arm" in parts:
                # The upper arm swings relative to the clavicle's protraction frame (the thorax
                # turned with the shoulder girdle), not its elevation: its limits then read as
                # arm-to-trunk angles whatever the shoulder elevation.
                arm = _columns(F[side.lower() + "arm"] @ self.general(side + "_shoulder_swing"))
                J[elbow] = T[sh] + sign * bl[elbow] * arm[0]
                arm = self.turn(arm, side + "_shoulder_twist", need=(0, 1))   # the elbow mixes columns 0, 1
                J[wrist] = J[elbow] + sign * bl[wrist] * self.turn(arm, side + "_elbow", need=(0,))[0]
        return J


class Skeleton:
    """Bone lengths (17,) in mm (entry 0, the root, unused) with forward and inverse kinematics."""

    def __init__(self, bone_lengths):
        bl = np.array(bone_lengths, dtype=np.float64)
        if bl.shape != (N_JOINTS,):
            raise ValueError(f"bone_lengths: expected shape ({N_JOINTS},), got {bl.shape}")
        if not np.all(np.isfinite(bl[1:])) or np.any(bl[1:] <= 0):
            raise ValueError("bone_lengths: entries 1..16 must be finite and positive")
        bl[0] = 0.0
        bl.flags.writeable = False
        self.bone_lengths = bl

    @classmethod
    def from_poses(cls, poses):
        """Skeleton with the median bone lengths of poses (N,17,3) (or (...,17,3)), mm."""
        lengths = bone_lengths(_check_joints(poses, "poses")).reshape(-1, N_JOINTS)
        return cls(np.median(lengths, axis=0))

    @classmethod
    def from_height(cls, height_mm):
        """Skeleton of a person height_mm tall from Drillis & Contini's proportions (see _HEIGHT_RATIOS)."""
        height = float(height_mm)
        if not np.isfinite(height) or height <= 0:
            raise ValueError(f"height_mm: expected a positive number, got {height_mm!r}")
        bl = np.zeros(N_JOINTS)
        for j, name in enumerate(JOINT_NAMES[1:], start=1):
            bl[j] = _HEIGHT_RATIOS[name] * height
        return cls(bl)

    def __repr__(self):
        return f"Skeleton({np.array2string(self.bone_lengths, precision=1, separator=', ')})"

    def forward(self, angles):
        """Joint angles (...,N_ANGLES) -> joints (...,17,3) in mm, root at the origin (z up, facing +y).

        Angles outside ANGLE_LIMITS are used as given (see clip_angles).
        """
        a = _check_angles(angles)
        J = np.zeros(a.shape[:-1] + (N_JOINTS, 3))
        for j, p in _Chain(self.bone_lengths, a, PARTS).joints(PARTS).items():
            J[..., j, :] = np.moveaxis(p, 0, -1)   # (3, ...) -> (..., 3)
        return J

    def part_joints(self, angles, parts, torso=None):
        """Joints of some body parts: {joint index: (3, ...)} (component-major: x, y, z first) for
        the joints PARTS[part] of each part in parts, angles (...,N_ANGLES).

        Each equals forward(angles)[..., joint, :] bit for bit, but only the parts asked for (and the
        torso they hang from) are computed. torso: None, or torso_frames(base) of angles base
        (n, N_ANGLES) whose torso angles (PART_ANGLES["torso"]) equal those of angles (n, p,
        N_ANGLES): the torso is then taken from base instead of being computed for each of the p
        (the partitioned APF's limb stage, which holds the torso), and a joint may come back
        (3, n, 1) where it does not depend on p.
        """
        a = _check_angles(angles)
        built = [q for q in parts if q != "torso"] + (["torso"] if torso is None else [])
        return _Chain(self.bone_lengths, a, built).joints(parts, torso)

    def torso_frames(self, angles):
        """The torso of angles (...,N_ANGLES), as part_joints(..., torso=) takes it."""
        return _Chain(self.bone_lengths, _check_angles(angles), ("torso",)).torso()

    def tpose(self):
        """The neutral T pose (17,3): all angles zero."""
        return self.forward(np.zeros(N_ANGLES))

    def inverse(self, joints, clip=True):
        """Joints (...,17,3) (any root position) -> angles (...,N_ANGLES) within ANGLE_LIMITS.

        forward(inverse(j)) reproduces j (to ~1e-12 mm) when j is a pose of this skeleton within
        the limits. Otherwise it returns a nearby valid pose: bone directions are kept and lengths
        replaced by the skeleton's; the hips go on the common axis that best fits both hip bones;
        an angle beyond its limit is clipped, and the rest of the chain is solved from the clipped
        frame so that the child bones keep their world directions as far as their own limits allow.

        The upper-body twist and the two clavicle protractions are one degree of freedom more
        than the joints show (only the clavicles' azimuths are seen; every child hangs from
        frames that depend on those alone): the twist is the one that protracts both clavicles
        alike, moved to the nearest twist for which the twist and both protractions are within
        their limits where there is one (so that a pose within the limits comes back exactly).

        clip=False: the same solution without any clipping to ANGLE_LIMITS or SWING_CONES (each
        angle as the pose has it, the chain solved from the unclipped frames; the twist as above
        where one within the limits exists, else the balanced one), for measuring how far poses
        lie outside the limits (python -m data.skeleton --check).
        """
        J = _check_joints(joints)
        d = _normalize(J - J[..., np.maximum(_PARENTS, 0), :])
        ang = np.zeros(J.shape[:-2] + (N_ANGLES,))
        elem = self._element

        # Pelvis frame: x along the mean hip axis, z the spine direction made perpendicular to x.
        x0 = _normalize(d[..., 1, :] - d[..., 4, :])
        z0 = _normalize(d[..., 7, :] - _dot(d[..., 7, :], x0)[..., None] * x0)
        R0 = np.stack([x0, np.cross(z0, x0), z0], axis=-1)
        ang[..., ROOT_ANGLES] = matrix_to_rotvec(R0)
        R0 = elem(ang, "root")   # the frame forward() will rebuild
        v = _local(R0, d[..., 7, :])
        ang[..., _INDEX["Lumbar_lat"]] = _clip(np.arctan2(v[..., 0], v[..., 2]), ["Lumbar_lat"], clip)
        F7 = R0 @ elem(ang, "lumbar")

        # Trunk swing, then the twist and the clavicles from the shoulders' directions.
        s = _swing_vector(_TRUNK_REST, _local(F7, d[..., 8, :]))
        names = ["Spine_flex", "Spine_lat"]
        ang[..., [_INDEX[n] for n in names]] = _clip(np.stack([-s[..., 0], s[..., 1]], axis=-1), names, clip)
        G8 = F7 @ elem(ang, "spine_swing")
        self._clavicles(ang, _local(G8, d[..., 11, :]), _MIRROR_VEC * _local(G8, d[..., 14, :]), clip)
        F8 = G8 @ elem(ang, "spine_twist")

        # Neck and head: swings from their rest directions (no observable twist), the neck from the
        # shoulder line's frame.
        frame = F8 @ elem(ang, "neck_yaw")
        for joint, child, element, rest, lateral in (("Neck", 9, "neck", _NECK_REST, _NECK_LAT),
                                                     ("Head", 10, "head", _HEAD_REST, _HEAD_LAT)):
            s = _swing_vector(rest, _local(frame, d[..., child, :]))
            names = [joint + "_flex", joint + "_lat"]
            ang[..., [_INDEX[n] for n in names]] = _clip(np.stack([-s[..., 0], _dot(s, lateral)], axis=-1), names, clip)
            frame = frame @ elem(ang, element)

        for side, hip, knee, foot, sh, elbow, wrist in (("R", 1, 2, 3, 14, 15, 16),
                                                       ("L", 4, 5, 6, 11, 12, 13)):
            # Local vectors of the right side are mirrored so both sides use the left conventions.
            mir = _MIRROR_VEC if side == "R" else np.ones(3)

            s = _swing_vector(_THIGH_REST, mir * _local(R0, d[..., knee, :]))
            names = [side + "Hip_flex", side + "Hip_abd"]
            ang[..., [_INDEX[n] for n in names]] = _clip(s[..., :2], names, clip)
            swung = R0 @ elem(ang, side + "_hip_swing")
            w = mir * _local(swung, d[..., foot, :])
            e, t = _hinge_twist(w, _THIGH_REST, _KNEE_BEND, ANGLE_LIMITS[_INDEX[side + "Knee_flex"]],
                                ANGLE_LIMITS[_INDEX[side + "Hip_rot"]], clip)
            ang[..., _INDEX[side + "Knee_flex"]], ang[..., _INDEX[side + "Hip_rot"]] = e, t

            base = F8 @ elem(ang, side + "_clavicle_yaw")
            s = _swing_vector(_ARM_REST, mir * _local(base, d[..., elbow, :]))
            names = [side + "Shoulder_flex", side + "Shoulder_abd"]
            pair = _clip(np.stack([-s[..., 2], s[..., 1]], axis=-1), names, clip)
            if clip:
                for (a, b), radius in SWING_CONES:
                    if (a, b) == tuple(names):
                        pair = _clip_cone(pair, radius)
            ang[..., [_INDEX[n] for n in names]] = pair
            swung = base @ elem(ang, side + "_shoulder_swing")
            w = mir * _local(swung, d[..., wrist, :])
            e, t = _hinge_twist(w, _ARM_REST, _ELBOW_BEND, ANGLE_LIMITS[_INDEX[side + "Elbow_flex"]],
                                ANGLE_LIMITS[_INDEX[side + "Shoulder_rot"]], clip)
            ang[..., _INDEX[side + "Elbow_flex"]], ang[..., _INDEX[side + "Shoulder_rot"]] = e, t
        return ang

    @staticmethod
    def _clavicles(ang, left, right, clip):
        """Spine_twist and both clavicles' elevation and protraction into ang (...,N_ANGLES) from
        the unit Thorax->Shoulder directions (...,3) in the swung trunk frame (before the twist),
        the right one mirrored (x -> -x).

        Left: the direction is Rz(t - prot_L) (-cos elev, 0, sin elev), so its azimuth a_L = t - prot_L;
        right (mirrored): b_R = t + prot_R. Given a_L, b_R, any twist t works: the balanced one
        (prot_L = prot_R, t_b = (a_L + b_R) / 2) is moved by the least amount that brings t and
        both protractions within their limits (prot_L = h + u, prot_R = h - u with h = (b_R - a_L) / 2
        and u = t - t_b); where no twist does, the balanced one (clip=False) or the twist nearest
        the protraction-feasible range, clipped to the twist limits, with protractions clipped.
        """
        lo, hi = ANGLE_LIMITS[_INDEX["LClavicle_prot"]]
        assert tuple(ANGLE_LIMITS[_INDEX["RClavicle_prot"]]) == (lo, hi)    # one table row
        t_lo, t_hi = ANGLE_LIMITS[_INDEX["Spine_twist"]]
        a_left = np.arctan2(-left[..., 1], -left[..., 0])
        b_right = -np.arctan2(-right[..., 1], -right[..., 0])
        h = 0.5 * np.arctan2(np.sin(b_right - a_left), np.cos(b_right - a_left))   # half the wrapped difference
        balanced = a_left + h
        balanced = np.arctan2(np.sin(balanced), np.cos(balanced))
        # u keeping both protractions within [lo, hi], then the twist too
        u_lo, u_hi = np.maximum(lo - h, h - hi), np.minimum(hi - h, h - lo)
        lower, upper = np.maximum(u_lo, t_lo - balanced), np.minimum(u_hi, t_hi - balanced)
        feasible = lower <= upper
        u = np.where(feasible, np.clip(0.0, lower, np.maximum(lower, upper)), 0.0)
        if clip:
            nearest = np.where(u_lo <= u_hi, np.clip(0.0, u_lo, np.maximum(u_lo, u_hi)), 0.0)
            outside = np.clip(balanced + nearest, t_lo, t_hi) - balanced
            u = np.where(feasible, u, outside)
        ang[..., _INDEX["Spine_twist"]] = _clip(balanced + u, ["Spine_twist"], clip)
        for side, v, prot in (("L", left, h + u), ("R", right, h - u)):
            ang[..., _INDEX[side + "Clavicle_prot"]] = _clip(prot, [side + "Clavicle_prot"], clip)
            ang[..., _INDEX[side + "Clavicle_elev"]] = _clip(np.arctan2(v[..., 2], np.hypot(v[..., 0], v[..., 1])),
                                                              [side + "Clavicle_elev"], clip)

    @staticmethod
    def _element(angles, name):
        """One elementary rotation (...,3,3) of angles (...,N_ANGLES), exactly as forward builds it."""
        return rotvec_to_matrix(np.einsum("...n,kn->...k", angles, _A[_E[name]]))


if __name__ == "__main__":     # python -m data.skeleton --check FILE.h5: see data.skeleton_check
    import sys

    from data.skeleton_check import main

    sys.exit(main())

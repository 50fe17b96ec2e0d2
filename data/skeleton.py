"""Kinematic model of the 17-joint Human3.6M skeleton: joint angles, human limits, FK and IK.

Body frame (root orientation zero): x = the subject's right, y = forward (the subject faces +y),
z = up; right-handed, millimetres. Zero angles give the neutral T pose: upright, legs straight
down, arms horizontal along -x (left) and +x (right), the root (Hip) at the origin.

Parameterisation (docs/apf.md has the full table). Every rotation is the exponential of a
rotation vector whose components are signed copies of the angles, so one batched Rodrigues call
builds all of them:
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
  * Spine: swing (flex, lat) of Spine->Thorax plus the upper-body twist, observed from the line
    joining the shoulders.
  * clavicles: elevation only (in the thorax's frontal plane), so the shoulder line fixes the
    thorax twist. Shoulder protraction (forward/back) is not modelled: inverse projects the
    shoulders into the thorax's frontal plane.
  * neck (Thorax->Neck/Nose) and head (Neck/Nose->Head): swing only; twist about a bone whose
    child is a single point is unobservable.
  * right limbs are the mirror images (x -> -x) of the left ones, so equal angles give mirrored
    poses and the limits table is shared. Signs: flex > 0 forward (knee/elbow flex > 0 bends),
    abd > 0 away from the midline (shoulder abd > 0 raises the arm above the horizontal),
    rot > 0 internal rotation, lat > 0 toward the subject's right for the midline joints,
    twist > 0 turns the upper body to the left, elev > 0 raises the shoulder.

forward and inverse are vectorised over any leading dimensions and work in float64.
"""
import numpy as np

from data.h36m import JOINT_NAMES, N_JOINTS, PARENTS

_PARENTS = np.array(PARENTS)
_DEG = np.pi / 180.0

# (name, lower, upper) in degrees. Generous human ranges: the swing/twist parameters are not
# clinical angles, and mocap joint centres differ from anatomical ones, so the clinical ranges
# (AAOS / Kapandji tables) are widened by 10-20 degrees; they still exclude limbs through the
# body, knees/elbows bending backwards and heads turned beyond the shoulders.
_LIMITS_DEG = (
    ("root_x", -180, 180), ("root_y", -180, 180), ("root_z", -180, 180),
    ("Lumbar_lat", -30, 30),
    ("RHip_flex", -40, 130), ("RHip_abd", -35, 60), ("RHip_rot", -80, 80),
    ("RKnee_flex", -5, 160),
    ("LHip_flex", -40, 130), ("LHip_abd", -35, 60), ("LHip_rot", -80, 80),
    ("LKnee_flex", -5, 160),
    ("Spine_flex", -40, 80), ("Spine_lat", -40, 40), ("Spine_twist", -60, 60),
    ("Neck_flex", -60, 70), ("Neck_lat", -50, 50),
    ("Head_flex", -70, 70), ("Head_lat", -60, 60),
    ("LClavicle_elev", -45, 40),
    ("LShoulder_flex", -90, 150), ("LShoulder_abd", -110, 110), ("LShoulder_rot", -100, 100),
    ("LElbow_flex", -5, 160),
    ("RClavicle_elev", -45, 40),
    ("RShoulder_flex", -90, 150), ("RShoulder_abd", -110, 110), ("RShoulder_rot", -100, 100),
    ("RElbow_flex", -5, 160),
)
ANGLE_NAMES = tuple(name for name, _, _ in _LIMITS_DEG)
N_ANGLES = len(ANGLE_NAMES)
ANGLE_LIMITS = np.array([(lo, hi) for _, lo, hi in _LIMITS_DEG], dtype=np.float64) * _DEG
ANGLE_LIMITS.flags.writeable = False
ROOT_ANGLES = slice(0, 3)
_INDEX = {name: i for i, name in enumerate(ANGLE_NAMES)}
# Cone limits on the shoulder swings (the box alone would admit a 186 degree swing at its corner,
# which wraps around and points the arm through the chest): |(flex, abd)| <= 150 degrees.
SWING_CONES = (
    (("LShoulder_flex", "LShoulder_abd"), 150.0 * _DEG),
    (("RShoulder_flex", "RShoulder_abd"), 150.0 * _DEG),
)
_CONES = tuple(([_INDEX[a], _INDEX[b]], radius) for (a, b), radius in SWING_CONES)


def angle_index(name):
    """Index of an angle in the joint-angle vector, e.g. angle_index("LElbow_flex") -> 23."""
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
        # Clavicle rest direction -x: a rotation about +y raises it.
        "clavicle": _rotation_rows([(side + "Clavicle_elev", _Y)], m),
        # Upper-arm rest direction -x: about +y raises it (abd), about -z swings it forward (flex).
        "shoulder_swing": _rotation_rows([(side + "Shoulder_abd", _Y), (side + "Shoulder_flex", -_Z)], m),
        # Internal rotation: about the rest direction -x (the flexed forearm turns downward in T).
        "shoulder_twist": _rotation_rows([(side + "Shoulder_rot", -_X)], m),
        # The forearm bends forward (+y): rotation about -z.
        "elbow": _rotation_rows([(side + "Elbow_flex", -_Z)], m),
    }


_LEFT, _RIGHT = _limb_rotations("L"), _limb_rotations("R")
_ELEMENTS = {
    "root": _rotation_rows([("root_x", _X), ("root_y", _Y), ("root_z", _Z)]),
    "lumbar": _rotation_rows([("Lumbar_lat", _Y)]),
    # Trunk rest direction +z: about -x bends forward, about +y bends toward the right (+x).
    "spine_swing": _rotation_rows([("Spine_flex", -_X), ("Spine_lat", _Y)]),
    "spine_twist": _rotation_rows([("Spine_twist", _Z)]),
    "neck": _rotation_rows([("Neck_flex", -_X), ("Neck_lat", _Y)]),
    "head": _rotation_rows([("Head_flex", -_X), ("Head_lat", _Y)]),
}
for _side, _table in (("R", _RIGHT), ("L", _LEFT)):
    for _key, _rows in _table.items():
        _ELEMENTS[_side + "_" + _key] = _rows
_ELEMENT_NAMES = tuple(_ELEMENTS)
_E = {name: i for i, name in enumerate(_ELEMENT_NAMES)}
_A = np.stack([_ELEMENTS[name] for name in _ELEMENT_NAMES])  # (E, 3, N_ANGLES)
# forward() builds the general rotations (root and swings) with Rodrigues and applies the
# single-axis ones (twists, hinges, lumbar, clavicles) by mixing two frame columns, which costs a
# fraction of a 3x3 product: forward() is the particle filter's inner loop.
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
    safe = np.where(small, 1.0, th)
    # Series below 1e-4 rad: sin(t)/t and (1-cos t)/t^2 lose digits to cancellation there.
    a = np.where(small, 1.0 - th2 / 6.0, np.sin(safe) / safe)
    b = np.where(small, 0.5 - th2 / 24.0, (1.0 - np.cos(safe)) / (safe * safe))
    c = np.cos(th)
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
    cand = np.stack([
        np.stack([big[..., 0], s21 / d4[..., 0], s02 / d4[..., 0], s10 / d4[..., 0]], axis=-1),
        np.stack([s21 / d4[..., 1], big[..., 1], p01 / d4[..., 1], p02 / d4[..., 1]], axis=-1),
        np.stack([s02 / d4[..., 2], p01 / d4[..., 2], big[..., 2], p12 / d4[..., 2]], axis=-1),
        np.stack([s10 / d4[..., 3], p02 / d4[..., 3], p12 / d4[..., 3], big[..., 3]], axis=-1),
    ], axis=-2)
    pick = np.argmax(diag, axis=-1)[..., None, None]
    q = np.take_along_axis(cand, pick, axis=-2)[..., 0, :]
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


def clip_angles(angles):
    """Angles (...,N_ANGLES) clipped to ANGLE_LIMITS, then the shoulder swings to SWING_CONES."""
    a = np.clip(_check_angles(angles), ANGLE_LIMITS[:, 0], ANGLE_LIMITS[:, 1])
    for idx, radius in _CONES:
        a[..., idx] = _clip_cone(a[..., idx], radius)
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
# between chin and eyes (0.903); Head at the top of the head (1.0). The resulting T pose stands
# 0.961 H from ankle to head top (the ankle is 0.039 H above the floor).
_HEIGHT_RATIOS = {
    "RHip": 0.191 / 2, "RKnee": 0.245, "RFoot": 0.246,
    "LHip": 0.191 / 2, "LKnee": 0.245, "LFoot": 0.246,
    "Spine": 0.288 / 2, "Thorax": 0.288 / 2, "Neck/Nose": 0.903 - 0.818, "Head": 1.0 - 0.903,
    "LShoulder": 0.259 / 2, "LElbow": 0.186, "LWrist": 0.146,
    "RShoulder": 0.259 / 2, "RElbow": 0.186, "RWrist": 0.146,
}


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
        G = rotvec_to_matrix((a @ _GENERAL_T).reshape(a.shape[:-1] + (len(_GENERAL_ELEMENTS), 3)))
        theta = a @ _AXIS_T
        cos, sin = np.cos(theta), np.sin(theta)

        def general(name):
            return G[..., _G[name], :, :]

        def turn(F, name, column=None):
            """F @ R where R is the single-axis rotation `name`; only one column if asked."""
            k, m = _AXIS_OF[name], _S[name]
            i, j = _OTHER_AXES[k]
            c, s = cos[..., m, None], sin[..., m, None]
            if column == k:
                return F[..., :, k]
            if column == i:
                return c * F[..., :, i] + s * F[..., :, j]
            if column == j:
                return c * F[..., :, j] - s * F[..., :, i]
            out = np.empty_like(F)
            out[..., :, k] = F[..., :, k]
            out[..., :, i] = c * F[..., :, i] + s * F[..., :, j]
            out[..., :, j] = c * F[..., :, j] - s * F[..., :, i]
            return out

        bl = self.bone_lengths
        J = np.zeros(a.shape[:-1] + (N_JOINTS, 3))
        R0 = general("root")
        # Pelvis: the hips along the frame's x axis (the right hip on +x).
        J[..., 1, :] = bl[1] * R0[..., :, 0]
        J[..., 4, :] = -bl[4] * R0[..., :, 0]
        F7 = turn(R0, "lumbar")
        J[..., 7, :] = bl[7] * F7[..., :, 2]
        G8 = F7 @ general("spine_swing")
        J[..., 8, :] = J[..., 7, :] + bl[8] * G8[..., :, 2]
        F8 = turn(G8, "spine_twist")
        F9 = F8 @ general("neck")
        J[..., 9, :] = J[..., 8, :] + bl[9] * F9[..., :, 2]
        head = np.einsum("...ij,...j->...i", F9, general("head")[..., :, 2])
        J[..., 10, :] = J[..., 9, :] + bl[10] * head
        for side, hip, knee, foot, sh, elbow, wrist in (("R", 1, 2, 3, 14, 15, 16),
                                                       ("L", 4, 5, 6, 11, 12, 13)):
            sign = 1.0 if side == "R" else -1.0   # x of the rest directions after mirroring
            thigh = R0 @ general(side + "_hip_swing")
            J[..., knee, :] = J[..., hip, :] - bl[knee] * thigh[..., :, 2]
            thigh = turn(thigh, side + "_hip_twist")
            J[..., foot, :] = J[..., knee, :] - bl[foot] * turn(thigh, side + "_knee", column=2)
            J[..., sh, :] = J[..., 8, :] + sign * bl[sh] * turn(F8, side + "_clavicle", column=0)
            # The upper arm swings relative to the thorax, not the clavicle: its limits then
            # read as arm-to-trunk angles whatever the shoulder elevation.
            arm = F8 @ general(side + "_shoulder_swing")
            J[..., elbow, :] = J[..., sh, :] + sign * bl[elbow] * arm[..., :, 0]
            arm = turn(arm, side + "_shoulder_twist")
            J[..., wrist, :] = J[..., elbow, :] + sign * bl[wrist] * turn(arm, side + "_elbow", column=0)
        return J

    def tpose(self):
        """The neutral T pose (17,3): all angles zero."""
        return self.forward(np.zeros(N_ANGLES))

    def inverse(self, joints, clip=True):
        """Joints (...,17,3) (any root position) -> angles (...,N_ANGLES) within ANGLE_LIMITS.

        forward(inverse(j)) reproduces j (to ~1e-12 mm) when j is a pose of this skeleton within
        the limits. Otherwise it returns a nearby valid pose: bone directions are kept and lengths
        replaced by the skeleton's; the hips go on the common axis that best fits both hip bones;
        the shoulders are projected into the thorax's frontal plane; an angle beyond its limit is
        clipped, and the rest of the chain is solved from the clipped frame so that the child
        bones keep their world directions as far as their own limits allow.

        clip=False: the same solution without any clipping to ANGLE_LIMITS or SWING_CONES (each
        angle as the pose has it, the chain solved from the unclipped frames), for measuring how
        far poses lie outside the limits (python -m data.skeleton --check).
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

        # Trunk swing, then the twist that puts the shoulder line in the thorax's x-z plane.
        s = _swing_vector(_TRUNK_REST, _local(F7, d[..., 8, :]))
        names = ["Spine_flex", "Spine_lat"]
        ang[..., [_INDEX[n] for n in names]] = _clip(np.stack([-s[..., 0], s[..., 1]], axis=-1), names, clip)
        G8 = F7 @ elem(ang, "spine_swing")
        line = _local(G8, J[..., 14, :] - J[..., 11, :])
        ang[..., _INDEX["Spine_twist"]] = _clip(np.arctan2(line[..., 1], line[..., 0]), ["Spine_twist"], clip)
        F8 = G8 @ elem(ang, "spine_twist")

        # Neck and head: swings only (no observable twist).
        frame = F8
        for joint, child, element in (("Neck", 9, "neck"), ("Head", 10, "head")):
            s = _swing_vector(_TRUNK_REST, _local(frame, d[..., child, :]))
            names = [joint + "_flex", joint + "_lat"]
            ang[..., [_INDEX[n] for n in names]] = _clip(np.stack([-s[..., 0], s[..., 1]], axis=-1), names, clip)
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

            v = mir * _local(F8, d[..., sh, :])
            ang[..., _INDEX[side + "Clavicle_elev"]] = _clip(np.arctan2(v[..., 2], -v[..., 0]),
                                                              [side + "Clavicle_elev"], clip)
            s = _swing_vector(_ARM_REST, mir * _local(F8, d[..., elbow, :]))
            names = [side + "Shoulder_flex", side + "Shoulder_abd"]
            pair = _clip(np.stack([-s[..., 2], s[..., 1]], axis=-1), names, clip)
            ang[..., [_INDEX[n] for n in names]] = _clip_cone(pair, SWING_CONES[0][1]) if clip else pair
            swung = F8 @ elem(ang, side + "_shoulder_swing")
            w = mir * _local(swung, d[..., wrist, :])
            e, t = _hinge_twist(w, _ARM_REST, _ELBOW_BEND, ANGLE_LIMITS[_INDEX[side + "Elbow_flex"]],
                                ANGLE_LIMITS[_INDEX[side + "Shoulder_rot"]], clip)
            ang[..., _INDEX[side + "Elbow_flex"]], ang[..., _INDEX[side + "Shoulder_rot"]] = e, t
        return ang

    @staticmethod
    def _element(angles, name):
        """One elementary rotation (...,3,3) of angles (...,N_ANGLES), exactly as forward builds it."""
        return rotvec_to_matrix(np.einsum("...n,kn->...k", angles, _A[_E[name]]))


if __name__ == "__main__":     # python -m data.skeleton --check FILE.h5: see data.skeleton_check
    import sys

    from data.skeleton_check import main

    sys.exit(main())

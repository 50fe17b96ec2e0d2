"""Kinematics in the plain formulation of the first implementation (commit f12a484), before the
speed-ups: forward() on (...,3,3) frames throughout, Rodrigues with the series always evaluated,
Shepperd's method with all four candidates; the model itself is issue 14's (clavicle protraction,
the neck and head rest geometry). data.skeleton's component-major forward must reproduce it byte
for byte (the synthetic generator and the APF depend on its exact bits); tests only."""
import numpy as np

from data.h36m import N_JOINTS
from data.skeleton import _AXIS_OF, _AXIS_T, _GENERAL_ELEMENTS, _GENERAL_T, _HEAD_REST, _NECK_REST, _OTHER_AXES


_G = {n: i for i, n in enumerate(_GENERAL_ELEMENTS)}
_S = {n: i for i, n in enumerate(_AXIS_OF)}


def reference_rotvec_to_matrix(v):
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


def reference_matrix_to_rotvec(R):
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


def reference_forward(bone_lengths, angles):
    """Joint angles (...,N_ANGLES) -> joints (...,17,3) in mm, root at the origin (z up, facing +y).

    Angles outside ANGLE_LIMITS are used as given (see clip_angles).
    """
    a = np.asarray(angles, dtype=np.float64)
    G = reference_rotvec_to_matrix((a @ _GENERAL_T).reshape(a.shape[:-1] + (len(_GENERAL_ELEMENTS), 3)))
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

    bl = np.asarray(bone_lengths, dtype=np.float64)
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
    F9 = turn(F8, "neck_yaw") @ general("neck")
    J[..., 9, :] = J[..., 8, :] + bl[9] * (F9 @ _NECK_REST)
    head = np.einsum("...ij,...j->...i", F9, general("head") @ _HEAD_REST)
    J[..., 10, :] = J[..., 9, :] + bl[10] * head
    for side, hip, knee, foot, sh, elbow, wrist in (("R", 1, 2, 3, 14, 15, 16),
                                                   ("L", 4, 5, 6, 11, 12, 13)):
        sign = 1.0 if side == "R" else -1.0   # x of the rest directions after mirroring
        thigh = R0 @ general(side + "_hip_swing")
        J[..., knee, :] = J[..., hip, :] - bl[knee] * thigh[..., :, 2]
        thigh = turn(thigh, side + "_hip_twist")
        J[..., foot, :] = J[..., knee, :] - bl[foot] * turn(thigh, side + "_knee", column=2)
        yaw = turn(F8, side + "_clavicle_yaw")
        J[..., sh, :] = J[..., 8, :] + sign * bl[sh] * turn(yaw, side + "_clavicle", column=0)
        # The upper arm swings relative to the clavicle's protraction frame, not its elevation.
        arm = yaw @ general(side + "_shoulder_swing")
        J[..., elbow, :] = J[..., sh, :] + sign * bl[elbow] * arm[..., :, 0]
        arm = turn(arm, side + "_shoulder_twist")
        J[..., wrist, :] = J[..., elbow, :] + sign * bl[wrist] * turn(arm, side + "_elbow", column=0)
    return J

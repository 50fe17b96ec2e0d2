"""BVH (Biovision Hierarchy) export of valid poses: data.skeleton joint angles (the APF's result,
apf.refine_angles, or Skeleton.inverse of its poses) as one motion file per sequence.

The file (bvh_text, write_bvh):
  * HIERARCHY: the 17-joint Human3.6M tree (data.h36m.PARENTS), root Hip. A BVH joint's rotation
    moves every child offset rigidly, but Hip and Thorax have children that move independently of
    each other, so three helper joints with a zero offset are inserted: Lumbar (at Hip: the lumbar
    side bend carries Spine, the pelvis carries the hips) and LClavicle, RClavicle (at Thorax:
    each clavicle's protraction and elevation carry its shoulder, the neck rotation carries
    Neck/Nose).
    The five leaves are End Sites: RFoot and LFoot (of RKnee and LKnee), Head (of Neck/Nose),
    LWrist and RWrist (of LElbow and RElbow). NODES lists the nodes in file order; JOINT_NODE says
    which node holds each of the 17 joints.
  * OFFSET: millimetres, in the parent's rest frame, from the skeleton's bone lengths (its T pose,
    all angles zero). All rotations zero is that T pose standing along +Y, facing +Z, its left
    arm along +X (REST_FROM_BODY maps data.skeleton's body frame, x right, y forward, z up, onto
    this rest frame; it is folded into the rotations).
  * CHANNELS: the root has Xposition Yposition Zposition then three rotations, every other joint
    three rotations, in degrees, in the order EULER_ORDER (default "YZX": Yrotation Zrotation
    Xrotation). As BVH reads its channels, the local rotation is the product of the elementary
    rotations in the order listed (for YZX: R = Ry(a) Rz(b) Rx(c)); a node's position is its
    parent's plus the product of the local rotations from the root down to the parent applied to
    the node's OFFSET. The middle axis is where Euler angles are singular (+-90 degrees): YZX puts
    there the forward axis Z, about which only side bends, abductions and the clavicles turn;
    ZXY would put there the flexion axis X (knees bend to 160 degrees). Each channel is unwrapped
    over the frames (no 360-degree jumps).
  * MOTION: Frame Time = 1 / fps seconds; the root position is the root translation in mm (zero
    where only root-relative poses are known).
  * coordinates: the file's joints are world @ (the skeleton's joints) + world @ root_translation,
    with world a rotation: CAMERA_TO_BVH for poses in camera coordinates (x right, y down, z away
    from the camera; the file then has X right, Y up, Z toward the camera), BODY_TO_BVH (the
    default) for the skeleton's body frame.
Values are written with 6 decimals: the file's forward kinematics reproduces bvh_joints within
1e-4 mm (tests/apf/test_bvh.py reads it back with an independent parser).
"""
import numpy as np

from data.files import write_text_atomic
from data.h36m import JOINT_NAMES, N_JOINTS
from data.skeleton import N_ANGLES, Skeleton

# (node, parent node, the H36M joint at the node, the H36M joint of its End Site or None), in file
# order (depth first). Helper joints (Lumbar, LClavicle, RClavicle) sit on their parent's joint.
NODES = (
    ("Hip", None, "Hip", None),
    ("RHip", "Hip", "RHip", None),
    ("RKnee", "RHip", "RKnee", "RFoot"),
    ("LHip", "Hip", "LHip", None),
    ("LKnee", "LHip", "LKnee", "LFoot"),
    ("Lumbar", "Hip", "Hip", None),
    ("Spine", "Lumbar", "Spine", None),
    ("Thorax", "Spine", "Thorax", None),
    ("Neck/Nose", "Thorax", "Neck/Nose", "Head"),
    ("LClavicle", "Thorax", "Thorax", None),
    ("LShoulder", "LClavicle", "LShoulder", None),
    ("LElbow", "LShoulder", "LElbow", "LWrist"),
    ("RClavicle", "Thorax", "Thorax", None),
    ("RShoulder", "RClavicle", "RShoulder", None),
    ("RElbow", "RShoulder", "RElbow", "RWrist"),
)
NODE_NAMES = tuple(n[0] for n in NODES)
HELPER_NODES = ("Lumbar", "LClavicle", "RClavicle")
# H36M joint -> ("joint", node) for a joint node, ("end", node) for the End Site of node
JOINT_NODE = {**{n[2]: ("joint", n[0]) for n in NODES if n[0] not in HELPER_NODES},
              **{n[3]: ("end", n[0]) for n in NODES if n[3] is not None}}
# Each node's world frame as a product of data.skeleton's elementary rotations (Skeleton._element,
# as Skeleton.forward builds them), starting from its parent's frame; the root starts from nothing.
_FRAMES = {
    "Hip": ("root",),
    "RHip": ("R_hip_swing", "R_hip_twist"), "RKnee": ("R_knee",),
    "LHip": ("L_hip_swing", "L_hip_twist"), "LKnee": ("L_knee",),
    # the neck turns from the shoulder line's frame (the thorax turned by the mean protraction)
    "Lumbar": ("lumbar",), "Spine": ("spine_swing", "spine_twist"), "Thorax": ("neck_yaw", "neck"),
    "Neck/Nose": ("head",),
    # the clavicles and the upper arms turn from the thorax's frame (Spine's), not from Thorax's;
    # each upper arm from its clavicle's protraction, without the elevation
    "LClavicle": ("L_clavicle_yaw", "L_clavicle"), "LShoulder": ("L_clavicle_yaw", "L_shoulder_swing", "L_shoulder_twist"),
    "LElbow": ("L_elbow",),
    "RClavicle": ("R_clavicle_yaw", "R_clavicle"), "RShoulder": ("R_clavicle_yaw", "R_shoulder_swing", "R_shoulder_twist"),
    "RElbow": ("R_elbow",),
}
_FRAME_PARENT = {"LClavicle": "Spine", "LShoulder": "Spine", "RClavicle": "Spine", "RShoulder": "Spine"}

EULER_ORDERS = ("XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX")
EULER_ORDER = "YZX"
# body frame (x the subject's right, y forward, z up) -> the BVH rest frame (X left, Y up, Z forward)
REST_FROM_BODY = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
BODY_TO_BVH = REST_FROM_BODY
# camera coordinates (x right, y down, z away from the camera) -> X right, Y up, Z toward the camera
CAMERA_TO_BVH = np.diag([1.0, -1.0, -1.0])
for _m in (REST_FROM_BODY, CAMERA_TO_BVH):
    _m.flags.writeable = False
_AXIS = {"X": 0, "Y": 1, "Z": 2}


def _check_rotation(world):
    W = np.asarray(world, dtype=np.float64)
    if W.shape != (3, 3) or not np.all(np.isfinite(W)):
        raise ValueError(f"world: expected a finite 3x3 rotation matrix, got shape {W.shape}")
    if not np.allclose(W @ W.T, np.eye(3), atol=1e-9) or np.linalg.det(W) < 0:
        raise ValueError("world: not a rotation matrix (orthonormal with determinant +1)")
    return W


def _check_order(order):
    order = str(order).upper()
    if order not in EULER_ORDERS:
        raise ValueError(f"euler order: expected one of {', '.join(EULER_ORDERS)}, got {order!r}")
    return order


def _check_inputs(skeleton, angles, root_translation, world):
    if not isinstance(skeleton, Skeleton):
        raise ValueError(f"skeleton: expected a data.skeleton.Skeleton, got {type(skeleton).__name__}")
    a = np.asarray(angles, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] != N_ANGLES:
        raise ValueError(f"angles: expected shape (frames >= 1, {N_ANGLES}), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"angles: {int(np.sum(~np.isfinite(a).all(axis=1)))} of {len(a)} frames hold NaN or inf")
    if root_translation is None:
        t = np.zeros((len(a), 3))
    else:
        t = np.asarray(root_translation, dtype=np.float64)
        if t.shape != (len(a), 3):
            raise ValueError(f"root_translation: expected shape ({len(a)}, 3) (one per frame), got {t.shape}")
        if not np.all(np.isfinite(t)):
            raise ValueError("root_translation: holds NaN or inf")
    return a, t, _check_rotation(world)


def node_offsets(skeleton):
    """{node: OFFSET (3,)} and {node: End Site OFFSET (3,)} in mm, in the BVH rest frame: the
    skeleton's T-pose bones (all angles zero) turned by REST_FROM_BODY."""
    tpose = skeleton.tpose()
    j = {name: i for i, name in enumerate(JOINT_NAMES)}
    at = {n[0]: n[2] for n in NODES}
    offsets, ends = {}, {}
    for node, parent, joint, end in NODES:
        offsets[node] = np.zeros(3) if parent is None else REST_FROM_BODY @ (tpose[j[joint]] - tpose[j[at[parent]]])
        if end is not None:
            ends[node] = REST_FROM_BODY @ (tpose[j[end]] - tpose[j[joint]])
    return offsets, ends


def local_rotations(skeleton, angles, world=BODY_TO_BVH):
    """Local rotation matrices (F, len(NODES), 3, 3) of the file's nodes for joint angles (F, N_ANGLES).

    The skeleton's world frames W_n (body frame) become the file's frames world W_n B^T, with
    B = REST_FROM_BODY. The root's local rotation is its frame; every other node's is its parent's
    frame transposed times its own (B W_parent^T W_n B^T).
    """
    a, _, world = _check_inputs(skeleton, angles, None, world)
    W = {}
    for node, parent, _, _ in NODES:
        F = None if parent is None else W[_FRAME_PARENT.get(node, parent)]
        for element in _FRAMES[node]:
            E = Skeleton._element(a, element)
            F = E if F is None else F @ E
        W[node] = F
    B = REST_FROM_BODY
    out = np.empty((len(a), len(NODES), 3, 3))
    for i, (node, parent, _, _) in enumerate(NODES):
        if parent is None:
            out[:, i] = world @ W[node] @ B.T
        else:
            out[:, i] = B @ np.swapaxes(W[parent], -1, -2) @ W[node] @ B.T
    return out


def _elementary(axis, theta):
    c, s = np.cos(theta), np.sin(theta)
    R = np.zeros(np.shape(theta) + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R[..., axis, axis] = 1.0
    R[..., i, i] = R[..., j, j] = c
    R[..., i, j], R[..., j, i] = -s, s
    return R


def euler_from_matrix(R, order=EULER_ORDER):
    """Rotation matrices (...,3,3) -> Euler angles (...,3) in radians, in the order of the axes of
    `order` (intrinsic: R = R_order[0](a) R_order[1](b) R_order[2](c), BVH's reading of CHANNELS).

    The middle angle is in [-pi/2, pi/2]; at the singularity (cos b < 1e-8) the third angle is 0.
    Either way the angles reproduce R to ~1e-8.
    """
    order = _check_order(order)
    i, j, k = (_AXIS[c] for c in order)
    s = 1.0 if (j - i) % 3 == 1 else -1.0          # cyclic order (XYZ, YZX, ZXY) or not
    R = np.asarray(R, dtype=np.float64)
    cb = np.hypot(R[..., i, i], R[..., i, j])
    b = np.arctan2(s * R[..., i, k], cb)
    a = np.arctan2(-s * R[..., j, k], R[..., k, k])
    c = np.arctan2(-s * R[..., i, j], R[..., i, i])
    lock = cb < 1e-8
    a = np.where(lock, np.arctan2(s * R[..., k, j], R[..., j, j]), a)
    c = np.where(lock, 0.0, c)
    return np.stack([a, b, c], axis=-1)


def matrix_from_euler(angles, order=EULER_ORDER):
    """Euler angles (...,3) in radians -> rotation matrices (...,3,3); the inverse of euler_from_matrix."""
    order = _check_order(order)
    e = np.asarray(angles, dtype=np.float64)
    R = _elementary(_AXIS[order[0]], e[..., 0])
    for n in (1, 2):
        R = R @ _elementary(_AXIS[order[n]], e[..., n])
    return R


def bvh_joints(skeleton, angles, root_translation=None, world=BODY_TO_BVH):
    """The 17 joints (F, 17, 3) in mm that the file of these arguments describes, in the file's
    coordinates: world @ skeleton.forward(angles) + world @ root_translation."""
    a, t, world = _check_inputs(skeleton, angles, root_translation, world)
    return np.einsum("ij,fkj->fki", world, skeleton.forward(a) + t[:, None, :])


def _numbers(values):
    return " ".join(f"{v:.6f}" for v in np.asarray(values, dtype=np.float64) + 0.0)


def bvh_text(skeleton, angles, fps, root_translation=None, world=BODY_TO_BVH, order=EULER_ORDER):
    """The BVH file (str) of joint angles (F, N_ANGLES) of skeleton at fps frames per second.

    root_translation: (F, 3) mm in the poses' coordinates, None = zero (root-relative poses).
    world: rotation (3,3) from the poses' coordinates to the file's (CAMERA_TO_BVH, BODY_TO_BVH).
    ValueError (one line) for a wrong shape, NaN or inf, a bad fps, world or order.
    """
    a, t, world = _check_inputs(skeleton, angles, root_translation, world)
    order = _check_order(order)
    try:
        rate = float(fps)
    except (TypeError, ValueError):
        rate = float("nan")
    if not np.isfinite(rate) or rate <= 0:
        raise ValueError(f"fps: expected a positive number of frames per second, got {fps!r}")
    fps = rate
    offsets, ends = node_offsets(skeleton)
    rot = " ".join(axis + "rotation" for axis in order)
    children = {}
    for node, parent, _, _ in NODES:
        children.setdefault(parent, []).append(node)
    end_of = {n[0]: n[3] for n in NODES}
    lines = ["HIERARCHY"]

    def emit(node, depth):
        pad = "\t" * depth
        lines.append(f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {node}")
        lines.append(pad + "{")
        lines.append(f"{pad}\tOFFSET {_numbers(offsets[node])}")
        lines.append(f"{pad}\tCHANNELS 6 Xposition Yposition Zposition {rot}" if depth == 0
                     else f"{pad}\tCHANNELS 3 {rot}")
        for child in children.get(node, []):
            emit(child, depth + 1)
        if end_of[node] is not None:
            lines.extend([f"{pad}\tEnd Site", f"{pad}\t{{", f"{pad}\t\tOFFSET {_numbers(ends[node])}", f"{pad}\t}}"])
        lines.append(pad + "}")

    emit(NODES[0][0], 0)
    euler = np.degrees(euler_from_matrix(local_rotations(skeleton, a, world), order))   # (F, nodes, 3)
    euler = np.unwrap(euler, period=360.0, axis=0)
    motion = np.concatenate([t @ world.T, euler.reshape(len(a), -1)], axis=1)
    lines += ["MOTION", f"Frames: {len(a)}", f"Frame Time: {1.0 / fps:.10g}"]
    lines += [_numbers(row) for row in motion]
    return "\n".join(lines) + "\n"


def write_bvh(path, skeleton, angles, fps, root_translation=None, world=BODY_TO_BVH, order=EULER_ORDER):
    """Write bvh_text(...) to path atomically (data.files.write_text_atomic). Returns path.
    ValueError for bad input, OSError naming path for a failed write."""
    write_text_atomic(path, bvh_text(skeleton, angles, fps, root_translation, world, order))
    return path


def angles_of_poses(skeleton, poses, tol_mm=0.01):
    """Joint angles (F, N_ANGLES) of poses (F, 17, 3) of this skeleton (Skeleton.inverse) and the
    largest distance (mm) between a joint of skeleton.forward(angles) and the pose's root-relative
    joint. A pose of the skeleton within its limits (the APF's) comes back to ~1e-12 mm (float32
    storage adds ~1e-4 mm); ValueError when the largest distance exceeds tol_mm (None: no check)."""
    p = np.asarray(poses, dtype=np.float64)
    if p.ndim != 3 or p.shape[0] < 1 or p.shape[1:] != (N_JOINTS, 3):
        raise ValueError(f"poses: expected shape (frames >= 1, {N_JOINTS}, 3), got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"poses: {int(np.sum(~np.isfinite(p).all(axis=(1, 2))))} of {len(p)} frames hold NaN or inf")
    p = p - p[:, :1]
    angles = skeleton.inverse(p)
    err = float(np.max(np.linalg.norm(skeleton.forward(angles) - p, axis=-1)))
    if tol_mm is not None and err > tol_mm:
        raise ValueError(f"poses: not poses of this skeleton within its limits (a joint is {err:.3g} mm from "
                         f"the skeleton's nearest valid pose, more than {tol_mm:g} mm)")
    return angles, err

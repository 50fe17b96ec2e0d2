"""Human3.6M conventions: the 17-joint skeleton, subjects, actions, cameras and projection.

Everything here is a public fact about the Human3.6M release (Ionescu et al., TPAMI 2014) as used
by the pose-estimation literature; nothing depends on the licensed data itself.

Coordinates: camera coordinates in millimetres, x to the right, y down, z forward (the optical
axis), as in the release's ``D3_Positions_mono`` files. World coordinates (used only to place the
synthetic cameras) have z up, millimetres.
"""
import json
import re

import numpy as np

# ---------------------------------------------------------------- the 17-joint skeleton
JOINT_NAMES = (
    "Hip", "RHip", "RKnee", "RFoot", "LHip", "LKnee", "LFoot", "Spine", "Thorax",
    "Neck/Nose", "Head", "LShoulder", "LElbow", "LWrist", "RShoulder", "RElbow", "RWrist",
)
N_JOINTS = 17
POSE_DIM = 3 * N_JOINTS     # a pose as one vector: (x, y, z) of each joint in turn
ROOT = 0
PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
LEFT_JOINTS = (4, 5, 6, 11, 12, 13)
RIGHT_JOINTS = (1, 2, 3, 14, 15, 16)
# Which of the 32 mocap joints of the release are kept, in the order of JOINT_NAMES.
H36M32_TO_17 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
# Joint index that swaps left and right (identity on the spine): used by flips and symmetry tests.
FLIP_PERMUTATION = tuple(
    RIGHT_JOINTS[LEFT_JOINTS.index(j)] if j in LEFT_JOINTS
    else LEFT_JOINTS[RIGHT_JOINTS.index(j)] if j in RIGHT_JOINTS else j
    for j in range(N_JOINTS)
)
# (child, parent) pairs: the 16 bones.
BONES = tuple((j, PARENTS[j]) for j in range(1, N_JOINTS))

# ---------------------------------------------------------------- subjects
ALL_SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")


def parse_subjects(subjects):
    """Subjects from "S1,S5" / "S1 S5" / ["S1", "S5"] / "train" / "test" / "all" -> tuple of names.

    Order follows ALL_SUBJECTS and duplicates are dropped. An unknown name raises ValueError
    naming it and listing the valid ones.
    """
    if isinstance(subjects, str):
        items = [s for s in re.split(r"[,\s]+", subjects.strip()) if s]
    else:
        items = [str(s).strip() for s in subjects]
    groups = {"train": TRAIN_SUBJECTS, "test": TEST_SUBJECTS, "all": ALL_SUBJECTS}
    wanted = set()
    for item in items:
        if item.lower() in groups:
            wanted.update(groups[item.lower()])
            continue
        # Accept "s9" and "9" as well as "S9": all three appear in scripts people write.
        name = "S" + item[1:] if item[:1] in "sS" else "S" + item
        if name not in ALL_SUBJECTS:
            raise ValueError(f"unknown subject {item!r}; valid subjects are {', '.join(ALL_SUBJECTS)}"
                             " (or train, test, all)")
        wanted.add(name)
    if not wanted:
        raise ValueError("no subject given; valid subjects are " + ", ".join(ALL_SUBJECTS))
    return tuple(s for s in ALL_SUBJECTS if s in wanted)


# ---------------------------------------------------------------- actions
ACTIONS = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases",
    "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether",
)
# Raw-file spellings (lower case, spaces and underscores removed) -> canonical name. The release
# itself uses TakingPhoto / WalkingDog for S1 and "WalkTogether"; the rest cover spellings seen
# in derived releases and papers.
_ACTION_ALIASES = {a.lower(): a for a in ACTIONS}
_ACTION_ALIASES.update({
    "direction": "Directions",
    "discussions": "Discussion",
    "eat": "Eating",
    "greet": "Greeting",
    "phone": "Phoning", "phonecall": "Phoning",
    "takingphoto": "Photo", "takephoto": "Photo", "photos": "Photo",
    "pose": "Posing",
    "purchase": "Purchases",
    "sit": "Sitting",
    "sitdown": "SittingDown",
    "smoke": "Smoking",
    "wait": "Waiting",
    "walkingdog": "WalkDog", "walkdogs": "WalkDog",
    "walk": "Walking",
    "walkingtogether": "WalkTogether",
})


def split_action(raw_name):
    """'Walking 1' -> ('Walking', 1); 'TakingPhoto' -> ('Photo', None). Unknown -> ValueError."""
    text = str(raw_name).strip()
    match = re.fullmatch(r"(.*?)[\s_-]*(\d+)?", text)
    base, number = match.group(1), match.group(2)
    key = re.sub(r"[\s_\-]", "", base).lower()
    if key not in _ACTION_ALIASES:
        raise ValueError(f"unknown action {raw_name!r}; valid actions are {', '.join(ACTIONS)}")
    return _ACTION_ALIASES[key], (int(number) if number is not None else None)


def canonical_action(raw_name):
    """Canonical action name of a raw one: 'TakingPhoto 1' -> 'Photo', 'WalkingDog' -> 'WalkDog'."""
    return split_action(raw_name)[0]


def number_subactions(raw_names):
    """{raw name: (canonical action, sub-action)} of the sequences of one subject: the names of an
    action, in the order of their numbers (no number first: 'Walking' before 'Walking 1'), are its
    sub-actions 1, 2, ... The one numbering of the project: data.prepare_h36m numbers the files it
    finds this way, and data.vp3d the names of VideoPose3D's files. Unknown action: ValueError."""
    parsed = {str(raw): split_action(raw) for raw in raw_names}
    out = {}
    for action in ACTIONS:
        names = sorted((raw for raw, (a, _) in parsed.items() if a == action),
                       key=lambda raw: (parsed[raw][1] or 0, raw))
        out.update({raw: (action, i + 1) for i, raw in enumerate(names)})
    return out


# The release's sequences: the file names (D3_Positions/<name>.<camera>.cdf, Videos/<name>.<camera>.mp4)
# of each subject, two per action. Source: the release's metadata.xml, whose <mapping> table lists
# them per subject (data.h36m_metadata reads it; Metadata.file_prefix), as the public converters
# copy it out (the VideoPose3D-based loaders that map (action id, sub-action id) to these names).
# Most actions are the files "A" and "A 1"; the exceptions, by their numbers (0: no number):
_SEQUENCE_NUMBERS = {
    "S1": {"Eating": (0, 2), "Sitting": (1, 2), "SittingDown": (0, 2)},
    "S5": {"Directions": (1, 2), "Discussion": (2, 3), "Greeting": (1, 2), "Photo": (0, 2), "Waiting": (1, 2)},
    "S6": {"Eating": (1, 2), "Posing": (0, 2), "Sitting": (1, 2), "Waiting": (0, 3)},
    "S7": {"Phoning": (0, 2), "Waiting": (1, 2), "Walking": (1, 2)},
    "S8": {"WalkTogether": (1, 2)},
    "S9": {"Discussion": (1, 2)},
    "S11": {"Discussion": (1, 2), "Greeting": (0, 2), "Phoning": (2, 3), "Smoking": (0, 2)},
}
# S1's files spell two actions the old way (VideoPose3D renames them: TakingPhoto -> Photo,
# WalkingDog -> WalkDog, in its prepare_data_h36m.py).
_S1_SPELLING = {"Photo": "TakingPhoto", "WalkDog": "WalkingDog"}


def _sequence_name(action, number):
    return action if not number else f"{action} {number}"


# {subject: the 30 file names, in ACTIONS order and sub-action order}, the release's spelling.
RELEASE_SEQUENCES = {
    s: tuple(_sequence_name(_S1_SPELLING.get(a, a) if s == "S1" else a, n)
             for a in ACTIONS for n in _SEQUENCE_NUMBERS[s].get(a, (0, 1)))
    for s in ALL_SUBJECTS
}


def sequence_names(subject):
    """{(action, sub-action): name} of a subject's 30 release sequences, the names in canonical
    spelling ('Photo 1', not S1's 'TakingPhoto 1': VideoPose3D's action keys), sub-actions numbered
    by number_subactions. S11 {('Phoning', 1): 'Phoning 2', ('Phoning', 2): 'Phoning 3', ...}."""
    subject = parse_subjects([subject])[0]
    return {key: _sequence_name(*split_action(raw)) for raw, key in
            number_subactions(RELEASE_SEQUENCES[subject]).items()}


def parse_sequence_name(subject, name):
    """(action, sub-action) of one of a subject's release sequences, by its name in either
    spelling ('TakingPhoto 1' or 'Photo 1' for S1). A name that is not one of the subject's 30
    (as 'Sitting 3', or '_ALL') is a ValueError listing the action's names."""
    subject = parse_subjects([subject])[0]
    action, number = split_action(name)     # ValueError for an unknown action
    names = {v: k for k, v in sequence_names(subject).items()}
    wanted = _sequence_name(action, number)
    if wanted not in names:
        listed = [n for (a, _), n in sorted(sequence_names(subject).items()) if a == action]
        raise ValueError(f"{name!r} is not a sequence of {subject} in the Human3.6M release "
                         f"(its {action} sequences are {' and '.join(map(repr, listed))})")
    return names[wanted]


# ---------------------------------------------------------------- cameras
class Camera:
    """Intrinsics of one Human3.6M camera (pixels) and, where known, per-subject extrinsics.

    fx, fy: focal lengths; cx, cy: principal point; k: radial (k1, k2, k3); p: tangential (p1, p2);
    width, height: image size in pixels.
    """

    def __init__(self, id, fx, fy, cx, cy, k, p, width, height):
        self.id = str(id)
        self.fx, self.fy, self.cx, self.cy = float(fx), float(fy), float(cx), float(cy)
        self.k = tuple(float(v) for v in k)
        self.p = tuple(float(v) for v in p)
        self.width, self.height = int(width), int(height)

    @property
    def focal(self):
        return np.array([self.fx, self.fy])

    @property
    def center(self):
        return np.array([self.cx, self.cy])

    def to_dict(self):
        return {"id": self.id, "fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy,
                "k": list(self.k), "p": list(self.p), "width": self.width, "height": self.height}

    @classmethod
    def from_dict(cls, d):
        return cls(d["id"], d["fx"], d["fy"], d["cx"], d["cy"], d["k"], d["p"], d["width"], d["height"])

    def __repr__(self):
        return (f"Camera({self.id}, f=({self.fx:.1f}, {self.fy:.1f}), c=({self.cx:.1f}, {self.cy:.1f}),"
                f" {self.width}x{self.height})")


CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")
FPS = 50        # the release's capture rate: every frame index in a file counts 50 Hz frames
# The calibration shipped with the release (values as distributed in its metadata).
CAMERAS = {
    "54138969": Camera("54138969", 1145.0494384765625, 1143.7811279296875,
                       512.54150390625, 515.4514770507812,
                       (-0.20709891617298126, 0.24777518212795258, -0.0030751503072679043),
                       (-0.0009756988729350269, -0.00142447161488235), 1000, 1002),
    "55011271": Camera("55011271", 1149.6756591796875, 1147.5916748046875,
                       508.8486328125, 508.0649108886719,
                       (-0.1942136287689209, 0.2404085397720337, 0.006819975562393665),
                       (-0.0016190266469493508, -0.0027408944442868233), 1000, 1000),
    "58860488": Camera("58860488", 1149.1407470703125, 1148.7989501953125,
                       519.8158569335938, 501.40264892578125,
                       (-0.2083381861448288, 0.25548800826072693, -0.0024604974314570427),
                       (0.0014843869721516967, -0.0007599993259645998), 1000, 1000),
    "60457274": Camera("60457274", 1145.5113525390625, 1144.77392578125,
                       514.9682006835938, 501.88201904296875,
                       (-0.198384091258049, 0.21832367777824402, -0.008947807364165783),
                       (-0.0005872055771760643, -0.0018133620033040643), 1000, 1002),
}

# Per-subject extrinsics of the release: camera orientation as a unit quaternion (w, x, y, z)
# rotating camera axes into world axes, and the camera centre in world coordinates (mm, z up).
_EXTRINSICS = {
    "S1": (([0.1407056450843811, -0.1500701755285263, -0.755240797996521, 0.6223280429840088],
            [1841.1070556640625, 4955.28466796875, 1563.4454345703125]),
           ([0.6157187819480896, -0.764836311340332, -0.14833825826644897, 0.11794740706682205],
            [1761.278564453125, -5078.0068359375, 1606.2650146484375]),
           ([0.14651472866535187, -0.14647851884365082, 0.7653023600578308, -0.6094175577163696],
            [-1846.7777099609375, 5215.04638671875, 1491.972412109375]),
           ([0.5834008455276489, -0.7853162288665771, 0.14548823237419128, -0.14749594032764435],
            [-1794.7896728515625, -3722.698974609375, 1574.8927001953125])),
    "S5": (([0.1467377245426178, -0.162370964884758, -0.7551892995834351, 0.6178938746452332],
            [2097.3916015625, 4880.94482421875, 1605.732421875]),
           ([0.6159758567810059, -0.7626792192459106, -0.15728192031383514, 0.1189815029501915],
            [2031.7008056640625, -5167.93310546875, 1612.923095703125]),
           ([0.14291371405124664, -0.12907841801643372, 0.7678384780883789, -0.6110143065452576],
            [-1620.5948486328125, 5171.65869140625, 1496.43701171875]),
           ([0.5920479893684387, -0.7814217805862427, 0.1274748593568802, -0.15036417543888092],
            [-1637.1737060546875, -3867.3173828125, 1547.033203125])),
    "S6": (([0.1337897777557373, -0.15692396461963654, -0.7571090459823608, 0.6198879480361938],
            [1935.4517822265625, 4950.24560546875, 1618.0838623046875]),
           ([0.6147197484970093, -0.7628812789916992, -0.16174767911434174, 0.11819244921207428],
            [1969.803955078125, -5128.73876953125, 1632.77880859375]),
           ([0.1529948115348816, -0.13529130816459656, 0.7646096348762512, -0.6112781167030334],
            [-1769.596435546875, 5185.361328125, 1476.993408203125]),
           ([0.5916101336479187, -0.7804774045944214, 0.12832270562648773, -0.1561593860387802],
            [-1721.668701171875, -3884.13134765625, 1540.4879150390625])),
    "S7": (([0.1435241848230362, -0.1631336808204651, -0.7548328638076782, 0.6188824772834778],
            [1974.512939453125, 4926.3544921875, 1597.8326416015625]),
           ([0.6141672730445862, -0.7638262510299683, -0.1596645563840866, 0.1177929937839508],
            [1937.0584716796875, -5119.7900390625, 1631.5665283203125]),
           ([0.14550060033798218, -0.12874816358089447, 0.7660516500473022, -0.6127139329910278],
            [-1741.8111572265625, 5208.24951171875, 1464.8245849609375]),
           ([0.5912848114967346, -0.7821764349937439, 0.12445473670959473, -0.15196487307548523],
            [-1734.7105712890625, -3832.42138671875, 1548.5830078125])),
    "S8": (([0.14110587537288666, -0.15589867532253265, -0.7561917304992676, 0.619644045829773],
            [2150.65185546875, 4896.1611328125, 1611.9046630859375]),
           ([0.6169601678848267, -0.7647668123245239, -0.14846350252628326, 0.11158157885074615],
            [2219.965576171875, -5148.453125, 1613.0440673828125]),
           ([0.1471444070339203, -0.13377119600772858, 0.7670128345489502, -0.6100369691848755],
            [-1571.2215576171875, 5137.0185546875, 1498.1761474609375]),
           ([0.5927824378013611, -0.7825870513916016, 0.12147816270589828, -0.14631995558738708],
            [-1476.913330078125, -3896.7412109375, 1547.97216796875])),
    "S9": (([0.15540587902069092, -0.15548215806484222, -0.7532095313072205, 0.6199594736099243],
            [2044.45849609375, 4935.1171875, 1481.2275390625]),
           ([0.618784487247467, -0.7634735107421875, -0.14132238924503326, 0.11933968216180801],
            [1990.959716796875, -5123.810546875, 1568.8048095703125]),
           ([0.13357827067375183, -0.1367100477218628, 0.7689454555511475, -0.6100738644599915],
            [-1670.9921875, 5211.98583984375, 1528.387939453125]),
           ([0.5879399180412292, -0.7823407053947449, 0.1427614390850067, -0.14794869720935822],
            [-1696.04345703125, -3827.099853515625, 1591.4127197265625])),
    "S11": (([0.15232472121715546, -0.15442320704460144, -0.7547563314437866, 0.6191070079803467],
             [2098.440185546875, 4926.5546875, 1500.278564453125]),
            ([0.6189449429512024, -0.7600917220115662, -0.15300633013248444, 0.1255258321762085],
             [2083.182373046875, -4912.1728515625, 1561.07861328125]),
            ([0.14943228662014008, -0.15650227665901184, 0.7681233882904053, -0.6026304364204407],
             [-1609.8153076171875, 5177.3359375, 1537.896728515625]),
            ([0.5894251465797424, -0.7818877100944519, 0.13991211354732513, -0.14715361595153809],
             [-1590.738037109375, -3854.1689453125, 1578.017578125])),
}


def quaternion_to_matrix(q):
    """Unit quaternion (w, x, y, z) -> (3,3) rotation matrix."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def extrinsics(subject, camera_id):
    """World-to-camera (R (3,3), T (3,)) of a subject's session: x_cam = R @ (x_world - T), mm."""
    subject = parse_subjects([subject])[0]
    if str(camera_id) not in CAMERA_IDS:
        raise ValueError(f"unknown camera {camera_id!r}; valid cameras are {', '.join(CAMERA_IDS)}")
    q, t = _EXTRINSICS[subject][CAMERA_IDS.index(str(camera_id))]
    # The quaternion rotates camera axes into world axes; its transpose maps world to camera.
    return quaternion_to_matrix(q).T, np.array(t, dtype=np.float64)


def world_to_camera(points, R, T):
    """(...,3) world points (mm) -> (...,3) camera coordinates, x_cam = R @ (x - T)."""
    return (np.asarray(points, dtype=np.float64) - T) @ np.asarray(R).T


def camera_to_world(points, R, T):
    """(...,3) camera coordinates (mm) -> (...,3) world points, the inverse of world_to_camera:
    x = R^T @ x_cam + T (R a rotation)."""
    return np.asarray(points, dtype=np.float64) @ np.asarray(R, dtype=np.float64) + np.asarray(T, dtype=np.float64)


def cameras_json(subjects=ALL_SUBJECTS):
    """JSON text of the intrinsics of the four cameras and the extrinsics of `subjects`."""
    out = {}
    for cid in CAMERA_IDS:
        entry = CAMERAS[cid].to_dict()
        entry["extrinsics"] = {}
        for s in subjects:
            R, T = extrinsics(s, cid)
            entry["extrinsics"][s] = {"R": R.tolist(), "T": T.tolist()}
        out[cid] = entry
    return json.dumps(out)


def _camera_args(camera):
    if isinstance(camera, Camera):
        return camera
    if str(camera) in CAMERAS:
        return CAMERAS[str(camera)]
    raise ValueError(f"unknown camera {camera!r}; valid cameras are {', '.join(CAMERA_IDS)}")


def distort(xy, camera):
    """Normalised image coordinates (...,2) (x/z, y/z) -> distorted normalised coordinates.

    The release's model (its ProjectPointRadial): r2 = x^2 + y^2,
    radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3, tan = p1 y + p2 x,
    x_d = x (radial + tan) + p2 r2,  y_d = y (radial + tan) + p1 r2.
    """
    cam = _camera_args(camera)
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    k1, k2, k3 = cam.k
    p1, p2 = cam.p
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    tan = p1 * y + p2 * x
    return np.stack([x * (radial + tan) + p2 * r2, y * (radial + tan) + p1 * r2], axis=-1)


def undistort(xy_d, camera, iterations=8):
    """Inverse of distort by fixed-point iteration: (...,2) distorted -> undistorted normalised.

    Converges to ~1e-9 within the image for the Human3.6M lenses (distortion of a few percent).
    """
    cam = _camera_args(camera)
    xy_d = np.asarray(xy_d, dtype=np.float64)
    xy = xy_d.copy()
    for _ in range(iterations):
        # distort() is close to the identity, so stepping by the residual converges quickly.
        xy = xy + (xy_d - distort(xy, cam))
    return xy


def project(points_cam, camera):
    """Camera-coordinate points (...,3) in mm -> pixel coordinates (...,2), with lens distortion.

    camera: a Camera or a camera id. Points must be in front of the camera (z > 0).
    """
    cam = _camera_args(camera)
    points_cam = np.asarray(points_cam, dtype=np.float64)
    if points_cam.shape[-1] != 3:
        raise ValueError(f"project: points must have a last axis of 3, got shape {points_cam.shape}")
    xy = points_cam[..., :2] / points_cam[..., 2:3]
    return distort(xy, cam) * cam.focal + cam.center


def pixel_rays(pixels, camera):
    """Pixel coordinates (...,2) -> unnormalised ray directions (...,3) (x, y, 1) in camera coordinates.

    Inverse of project up to depth: project(t * pixel_rays(p), cam) == p for any t > 0.
    """
    cam = _camera_args(camera)
    xy_d = (np.asarray(pixels, dtype=np.float64) - cam.center) / cam.focal
    xy = undistort(xy_d, cam)
    return np.concatenate([xy, np.ones(xy.shape[:-1] + (1,))], axis=-1)


def project_to_crop(poses, camera, boxes, size):
    """Joints (n,17,3) in camera mm -> (x, y) (n,17,2) in the pixels of S x S crops with boxes
    (n,3) = (x0, y0, side) in full-image pixels (see square_box)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    uv = project(poses, camera)
    return (uv - boxes[:, None, :2]) * (size / boxes[:, None, 2:3])


# Both datasets crop with this margin: (1 + margin) x the larger extent of the projected joints.
BOX_MARGIN = 0.2


def square_box(points_2d, margin=BOX_MARGIN, min_size=32.0):
    """Square crop box (x0, y0, size) around 2D points (...,N,2) in pixels, as (...,3) floats.

    The box is centred on the points' bounding box and its side is the larger extent times
    (1 + margin): Human3.6M's boxes enclose the silhouette, which reaches beyond the joints
    (head top, hands, feet), hence the margin.
    """
    pts = np.asarray(points_2d, dtype=np.float64)
    lo, hi = pts.min(axis=-2), pts.max(axis=-2)
    centre = (lo + hi) / 2
    size = np.maximum((hi - lo).max(axis=-1) * (1 + margin), min_size)
    return np.concatenate([centre - size[..., None] / 2, size[..., None]], axis=-1)

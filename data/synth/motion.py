"""Synthetic motions with the character of the 15 Human3.6M actions, driven through data.skeleton.

A motion is a script of segments (stand in a pose, walk to a point, sit on a chair, sit on the
floor...) chosen at random for the action. The performer turns the script into joint angles at
50 Hz: key poses cross-faded at segment boundaries, a walking gait whose phase follows the
distance walked, smooth per-angle jitter, all clipped to the skeleton's limits (clip_angles) and
passed through Skeleton.forward. It then places the body in the world: the root follows the
script's floor trajectory and heading (every orientation occurs: people turn and walk circuits),
and the root height comes from the lowest contact (feet, knees, buttocks, hands) touching the floor.

Angles are written in degrees in this module (the skeleton's conventions: flex > 0 forward,
abd > 0 away from the midline, the subject faces +y with x to its right and z up).
"""
import numpy as np

from data import h36m
from data import skeleton as sk

FPS = h36m.FPS
_D = np.pi / 180
_SIDES = ("L", "R")
_J = {name: i for i, name in enumerate(h36m.JOINT_NAMES)}
# Half extents (world mm) of the floor area the root stays in: the cameras look at its middle,
# and the nearest camera (60457274, about 3.8 m from the centre) stays at least 2.5 m away.
AREA = np.array([1500.0, 1300.0])


def _set(a, name, deg):
    a[sk.angle_index(name)] = deg * _D


# ============================================================================ building blocks
def legs_stand(rng, shift=None):
    """Standing legs, slight knee bend, optional weight shift to one leg (contrapposto)."""
    a = np.zeros(sk.N_ANGLES)
    for s in _SIDES:
        _set(a, s + "Hip_flex", rng.normal(2, 3))
        _set(a, s + "Hip_abd", rng.uniform(2, 9))
        _set(a, s + "Hip_rot", rng.normal(-5, 6))
        _set(a, s + "Knee_flex", rng.uniform(2, 8))
    shift = rng.random() < 0.5 if shift is None else shift
    if shift:
        s = _SIDES[rng.integers(2)]
        _set(a, s + "Knee_flex", rng.uniform(12, 25))
        _set(a, s + "Hip_flex", rng.uniform(6, 14))
        _set(a, "Lumbar_lat", rng.uniform(4, 9) * (1 if s == "L" else -1))
    return a


def legs_wide(rng):
    a = legs_stand(rng, shift=False)
    for s in _SIDES:
        _set(a, s + "Hip_abd", rng.uniform(14, 26))
    return a


def legs_lunge(rng):
    a = np.zeros(sk.N_ANGLES)
    front, back = _SIDES[rng.integers(2)], None
    back = "R" if front == "L" else "L"
    _set(a, front + "Hip_flex", rng.uniform(45, 75))
    _set(a, front + "Knee_flex", rng.uniform(50, 85))
    _set(a, back + "Hip_flex", rng.uniform(-30, -15))
    _set(a, back + "Knee_flex", rng.uniform(5, 25))
    for s in _SIDES:
        _set(a, s + "Hip_abd", rng.uniform(3, 12))
    return a


def legs_crouch(rng):
    a = np.zeros(sk.N_ANGLES)
    depth = rng.uniform(0.5, 1.0)
    for s in _SIDES:
        _set(a, s + "Hip_flex", 55 + 60 * depth + rng.normal(0, 5))
        _set(a, s + "Knee_flex", 60 + 75 * depth + rng.normal(0, 5))
        _set(a, s + "Hip_abd", rng.uniform(8, 25))
        _set(a, s + "Hip_rot", rng.uniform(-25, 0))
    _set(a, "Spine_flex", rng.uniform(15, 40))
    return a


def legs_kneel(rng):
    a = np.zeros(sk.N_ANGLES)
    up = _SIDES[rng.integers(2)]
    down = "R" if up == "L" else "L"
    _set(a, up + "Hip_flex", rng.uniform(80, 100))
    _set(a, up + "Knee_flex", rng.uniform(80, 100))
    _set(a, down + "Hip_flex", rng.uniform(-10, 10))
    _set(a, down + "Knee_flex", rng.uniform(95, 115))
    for s in _SIDES:
        _set(a, s + "Hip_abd", rng.uniform(5, 15))
    return a


def legs_knee_lift(rng):
    a = legs_stand(rng, shift=False)
    s = _SIDES[rng.integers(2)]
    _set(a, s + "Hip_flex", rng.uniform(60, 95))
    _set(a, s + "Knee_flex", rng.uniform(70, 110))
    return a


def legs_chair(rng):
    """Seated on a chair: thighs forward, shanks down; sometimes legs crossed or stretched."""
    a = np.zeros(sk.N_ANGLES)
    style = rng.choice(["plain", "crossed", "stretched", "tucked"], p=[0.45, 0.25, 0.15, 0.15])
    for s in _SIDES:
        _set(a, s + "Hip_flex", rng.uniform(80, 95))
        _set(a, s + "Knee_flex", rng.uniform(75, 100))
        _set(a, s + "Hip_abd", rng.uniform(3, 18))
        _set(a, s + "Hip_rot", rng.uniform(-15, 10))
    if style == "crossed":
        top = _SIDES[rng.integers(2)]
        _set(a, top + "Hip_flex", rng.uniform(95, 110))
        _set(a, top + "Hip_abd", rng.uniform(-25, -15))
        _set(a, top + "Knee_flex", rng.uniform(70, 90))
    elif style == "stretched":
        for s in _SIDES:
            _set(a, s + "Knee_flex", rng.uniform(20, 45))
    elif style == "tucked":
        for s in _SIDES:
            _set(a, s + "Knee_flex", rng.uniform(110, 130))
    return a


# A chair's seat height and the hip joint's height above the seat, as fractions of body height.
SEAT_HEIGHT, SEAT_OFFSET = 0.24, 0.05
ANKLE_CLEARANCE = 0.039        # the ankle joint above the floor (data.skeleton's proportions)


def feet_on_floor(skel, legs, root_height, clearance):
    """Adjust hip and knee flexion of each leg of `legs` so the ankle rests `clearance` mm above
    the floor when the root is `root_height` mm high (a seated person's feet on the floor).

    A grid search near the requested angles (hip flexion lowered by up to 25 degrees, any knee
    flexion), trading the foot's height error against the change. A leg crossed over the other
    (hip adduction beyond 10 degrees) is left in the air.
    """
    out = legs.copy()
    hip_grid, knee_grid = np.meshgrid(np.arange(-25, 1, 2.5) * _D, np.arange(0, 151, 5) * _D)
    for side, foot in (("L", _J["LFoot"]), ("R", _J["RFoot"])):
        if out[sk.angle_index(side + "Hip_abd")] < -10 * _D:
            continue
        hip, knee = sk.angle_index(side + "Hip_flex"), sk.angle_index(side + "Knee_flex")
        cand = np.repeat(out[None], hip_grid.size, axis=0)
        cand[:, hip] += hip_grid.ravel()
        cand[:, knee] = knee_grid.ravel()
        z = skel.forward(sk.clip_angles(cand))[:, foot, 2] + root_height
        change = 2.0 * np.abs(hip_grid.ravel()) + 0.5 * np.abs(cand[:, knee] - out[knee])
        cost = np.abs(z - clearance) + change / _D          # mm of height error vs degrees of change
        out[[hip, knee]] = cand[np.argmin(cost), [hip, knee]]
    return out


def legs_floor(rng):
    """Sitting on the floor: legs out, cross-legged, knees up, or side-sit."""
    a = np.zeros(sk.N_ANGLES)
    style = rng.choice(["out", "crossed", "knees_up", "one_up"])
    for s in _SIDES:
        if style == "out":
            _set(a, s + "Hip_flex", rng.uniform(75, 95))
            _set(a, s + "Knee_flex", rng.uniform(0, 25))
            _set(a, s + "Hip_abd", rng.uniform(5, 20))
        elif style == "crossed":
            _set(a, s + "Hip_flex", rng.uniform(70, 90))
            _set(a, s + "Hip_abd", rng.uniform(40, 55))
            _set(a, s + "Hip_rot", rng.uniform(-60, -40))
            _set(a, s + "Knee_flex", rng.uniform(130, 150))
        else:
            _set(a, s + "Hip_flex", rng.uniform(100, 120))
            _set(a, s + "Knee_flex", rng.uniform(110, 135))
            _set(a, s + "Hip_abd", rng.uniform(5, 20))
    if style == "one_up":
        s = _SIDES[rng.integers(2)]
        _set(a, s + "Hip_flex", rng.uniform(75, 90))
        _set(a, s + "Knee_flex", rng.uniform(0, 20))
    return a


def trunk(rng, flex=(0, 8), lat=4, twist=8, look_down=(0, 10)):
    """Spine, neck and head angles: flexion range, lateral and twist spreads (degrees)."""
    a = np.zeros(sk.N_ANGLES)
    _set(a, "Spine_flex", rng.uniform(*flex))
    _set(a, "Spine_lat", rng.normal(0, lat))
    _set(a, "Spine_twist", rng.normal(0, twist))
    _set(a, "Neck_flex", rng.uniform(*look_down))
    _set(a, "Neck_lat", rng.normal(0, 6))
    _set(a, "Head_flex", rng.uniform(-15, 10))    # the head at 54-79 degrees to the neck (rest 64)
    _set(a, "Head_lat", rng.normal(0, 6))
    for s in _SIDES:
        _set(a, s + "Clavicle_elev", rng.normal(0, 4))
        _set(a, s + "Clavicle_prot", rng.normal(0, 4))
    return a


# Arm specifications. ("ang", {suffix: (lo, hi)}) draws angles; ("reach", joint, offset, elbow)
# puts the wrist at a point given relative to a joint in the thorax frame (x right, y forward,
# z up; mm for a 1.75 m person; x is mirrored for the right arm, so +x means "outward"). The
# Neck/Nose joint is the nose, in front of the thorax line (93 mm at rest for 1.75 m, data.skeleton's
# rest geometry): the ear is behind it, the mouth and chin below it.
ARMS = {
    "down": ("ang", {"Shoulder_abd": (-84, -72), "Shoulder_flex": (-8, 10), "Elbow_flex": (5, 25),
                     "Shoulder_rot": (-10, 20)}),
    "bent": ("ang", {"Shoulder_abd": (-80, -65), "Shoulder_flex": (0, 25), "Elbow_flex": (50, 95),
                     "Shoulder_rot": (0, 40)}),
    "hip": ("reach", "Hip", ((150, 190), (-20, 40), (30, 90)), (1.0, -0.5, 0.1)),
    "ear": ("reach", "Neck/Nose", ((55, 80), (-103, -68), (-15, 25)), (0.5, 0.1, -1.0)),
    "mouth": ("reach", "Neck/Nose", ((-20, 15), (-23, 17), (-60, -30)), (0.6, 0.0, -1.0)),
    "chin": ("reach", "Neck/Nose", ((-20, 20), (-33, -3), (-90, -60)), (0.3, 0.2, -1.0)),
    "gesture": ("reach", "Thorax", ((30, 320), (220, 480), (-330, 80)), (0.8, -0.2, -1.0)),
    "gesture_high": ("reach", "Thorax", ((100, 400), (250, 500), (0, 300)), (1.0, -0.3, -0.6)),
    "camera": ("reach", "Neck/Nose", ((40, 90), (37, 97), (-10, 30)), (1.0, 0.0, -0.8)),
    "cross": ("reach", "Thorax", ((-170, -110), (140, 190), (-230, -160)), (1.0, 0.3, -0.5)),
    "behind": ("reach", "Hip", ((30, 80), (-170, -130), (40, 120)), (1.0, -1.0, -0.3)),
    "pocket": ("reach", "Hip", ((150, 190), (20, 70), (-90, -40)), (1.0, -0.6, 0.0)),
    "watch": ("reach", "Thorax", ((-80, 20), (250, 330), (-180, -90)), (1.0, -0.2, -1.0)),
    "table": ("reach", "Thorax", ((80, 220), (300, 420), (-300, -200)), (1.0, -0.3, -1.0)),
    "knee": ("reach", "Hip", ((150, 230), (300, 420), (30, 100)), (1.0, -0.5, 0.2)),
    "hug_knees": ("reach", "Hip", ((60, 140), (350, 450), (150, 300)), (1.0, -0.3, 0.0)),
    "floor": ("reach", "Hip", ((150, 260), (-250, -150), (-100, -60)), (1.0, -1.0, 0.2)),
    "carry": ("ang", {"Shoulder_abd": (-80, -65), "Shoulder_flex": (5, 30), "Elbow_flex": (70, 100),
                      "Shoulder_rot": (20, 50)}),
    "bag": ("ang", {"Shoulder_abd": (-75, -65), "Shoulder_flex": (-5, 10), "Elbow_flex": (0, 10),
                    "Shoulder_rot": (-10, 10)}),
    "leash": ("ang", {"Shoulder_abd": (-65, -40), "Shoulder_flex": (25, 55), "Elbow_flex": (5, 30),
                      "Shoulder_rot": (-10, 20)}),
    "point": ("ang", {"Shoulder_abd": (-20, 35), "Shoulder_flex": (30, 100), "Elbow_flex": (0, 20),
                      "Shoulder_rot": (-20, 20)}),
    "reach": ("ang", {"Shoulder_abd": (-25, 15), "Shoulder_flex": (60, 130), "Elbow_flex": (0, 35),
                      "Shoulder_rot": (-10, 20)}),
    "up": ("ang", {"Shoulder_abd": (45, 85), "Shoulder_flex": (-10, 30), "Elbow_flex": (0, 25),
                   "Shoulder_rot": (-20, 20)}),
    "side": ("ang", {"Shoulder_abd": (-15, 15), "Shoulder_flex": (-15, 20), "Elbow_flex": (0, 20),
                     "Shoulder_rot": (-20, 20)}),
    "wave": ("ang", {"Shoulder_abd": (10, 45), "Shoulder_flex": (10, 45), "Elbow_flex": (80, 120),
                     "Shoulder_rot": (-115, -75)}),   # external rotation beyond 100 (issue 14)
    "shake": ("ang", {"Shoulder_abd": (-65, -50), "Shoulder_flex": (35, 55), "Elbow_flex": (35, 60),
                      "Shoulder_rot": (-10, 10)}),
}


# The shoulder girdle moves with the arm (scapulohumeral rhythm): clavicle protraction (> 0
# forward) and elevation, degrees, drawn for the arm specs that reach forward, across or up, or
# hold the hands behind the back (retraction); the others keep trunk()'s small random values.
CLAVICLES = {
    "reach": ((8, 22), (0, 10)), "point": ((2, 12), (0, 8)), "table": ((2, 12), (0, 0)), "leash": ((5, 15), (0, 0)),
    "camera": ((5, 15), (3, 10)), "shake": ((2, 10), (0, 0)), "gesture": ((0, 10), (0, 6)),
    "gesture_high": ((0, 10), (5, 15)), "cross": ((5, 15), (0, 0)), "knee": ((5, 15), (0, 0)),
    "hug_knees": ((10, 20), (0, 5)), "carry": ((0, 8), (0, 0)), "watch": ((0, 10), (0, 0)),
    "behind": ((-15, -5), (-5, 0)), "up": ((-5, 5), (10, 25)), "wave": ((-5, 5), (5, 15)),
}


def _thorax_frame(J):
    """(3,3) columns: the subject's right, forward, up at the thorax of joints J (17,3)."""
    x = J[_J["RShoulder"]] - J[_J["LShoulder"]]
    x /= np.linalg.norm(x)
    z = J[_J["Thorax"]] - J[_J["Spine"]]
    z -= np.dot(z, x) * x
    z /= np.linalg.norm(z)
    return np.stack([x, np.cross(z, x), z], axis=1)


def apply_arm(skel, angles, side, name, rng):
    """Set the `side` arm of `angles` (radians, modified copy returned) to arm spec `name`."""
    spec = ARMS[name]
    a = angles.copy()
    if name in CLAVICLES:
        (p_lo, p_hi), (e_lo, e_hi) = CLAVICLES[name]
        a[sk.angle_index(side + "Clavicle_prot")] += rng.uniform(p_lo, p_hi) * _D
        a[sk.angle_index(side + "Clavicle_elev")] += rng.uniform(e_lo, e_hi) * _D
    if spec[0] == "ang":
        for suffix, (lo, hi) in spec[1].items():
            _set(a, side + suffix, rng.uniform(lo, hi))
        return a
    _, joint, box, hint = spec
    scale = skel.bone_lengths[1:].sum() / 4500.0      # ~1 for a 1.75 m body
    J = skel.forward(a)
    F = _thorax_frame(J)
    mirror = np.array([1.0 if side == "R" else -1.0, 1.0, 1.0])
    offset = np.array([rng.uniform(*r) for r in box]) * mirror * scale
    target = J[_J[joint]] + F @ offset
    elbow_hint = F @ (np.array(hint) * mirror)
    sho, elb, wri = (_J[side + "Shoulder"], _J[side + "Elbow"], _J[side + "Wrist"])
    upper, fore = skel.bone_lengths[elb], skel.bone_lengths[wri]
    # Two-bone inverse kinematics: the elbow on the circle of the law of cosines, on the side
    # of the hint; an unreachable target is approached along the same line.
    d_vec = target - J[sho]
    dist = np.clip(np.linalg.norm(d_vec), abs(upper - fore) + 1.0, upper + fore - 1.0)
    u = d_vec / np.linalg.norm(d_vec)
    cos_a = (upper ** 2 + dist ** 2 - fore ** 2) / (2 * upper * dist)
    h = elbow_hint - np.dot(elbow_hint, u) * u
    h /= max(np.linalg.norm(h), 1e-9)
    J2 = J.copy()
    J2[elb] = J[sho] + upper * (cos_a * u + np.sqrt(max(1 - cos_a ** 2, 0.0)) * h)
    J2[wri] = J[sho] + dist * u
    solved = skel.inverse(J2)
    for suffix in ("Shoulder_flex", "Shoulder_abd", "Shoulder_rot", "Elbow_flex"):
        i = sk.angle_index(side + suffix)
        a[i] = solved[i]
    return a


def pose(skel, rng, legs, body, left, right):
    """Key pose (N_ANGLES,) from a legs vector, a trunk vector and two arm spec names."""
    a = legs + body
    a = apply_arm(skel, a, "L", left, rng)
    return apply_arm(skel, a, "R", right, rng)


# ============================================================================ gait
def gait(phase, amount):
    """Angle offsets (T, N_ANGLES) of a walking cycle at phases (T,) (radians), scaled by amount (T,)."""
    out = np.zeros((len(phase), sk.N_ANGLES))
    amount = amount[:, None]
    for side, shift in (("L", 0.0), ("R", np.pi)):
        p = phase + shift
        out[:, sk.angle_index(side + "Hip_flex")] = (8 + 22 * np.sin(p)) * _D
        # The knee flexes most in mid-swing, while the hip is flexing (cos p > 0).
        out[:, sk.angle_index(side + "Knee_flex")] = (6 + 55 * np.maximum(0, np.cos(p + 0.5)) ** 2) * _D
        # The arms swing against the legs, the shoulder girdle a little with them.
        out[:, sk.angle_index(side + "Shoulder_flex")] = -18 * np.sin(p) * _D
        out[:, sk.angle_index(side + "Clavicle_prot")] = -4 * np.sin(p) * _D
        out[:, sk.angle_index(side + "Elbow_flex")] = (12 + 10 * np.maximum(0, -np.sin(p))) * _D
    out[:, sk.angle_index("Spine_twist")] = 5 * np.sin(phase) * _D
    out[:, sk.angle_index("Lumbar_lat")] = 3 * np.sin(2 * phase) * _D
    return out * amount


# ============================================================================ scripts
class Segment:
    """A piece of a script. kind: 'stand' (hold `pose` facing `yaw`), 'walk' (to `goal`),
    'chair' / 'floor' (hold a seated pose). osc: list of (angle name, amplitude deg, Hz)."""

    def __init__(self, kind, pose, duration=2.0, yaw=None, goal=None, speed=1.2, osc=(),
                 tilt=0.0, arm_swing=True):
        self.kind, self.pose, self.duration = kind, pose, duration
        self.yaw, self.goal, self.speed = yaw, goal, speed
        self.osc, self.tilt, self.arm_swing = list(osc), tilt, arm_swing


def _goal(rng, pos, min_dist=1200.0):
    for _ in range(20):
        g = rng.uniform(-AREA, AREA)
        if np.linalg.norm(g - pos) >= min_dist:
            return g
    return -pos * 0.8


class Script:
    """Builds segments for one sequence. `pos` tracks where the walking segments lead."""

    def __init__(self, skel, height, rng, start):
        self.skel, self.height, self.rng, self.pos = skel, height, rng, np.array(start, float)
        self.segments = []

    def stand(self, left, right, legs=None, body=None, duration=(1.5, 4.0), yaw=None, osc=(),
              kind="stand", tilt=0.0):
        rng = self.rng
        legs = legs_stand(rng) if legs is None else legs
        if kind == "chair":
            h = self.height
            legs = feet_on_floor(self.skel, legs, (SEAT_HEIGHT + SEAT_OFFSET) * h, ANKLE_CLEARANCE * h)
        body = trunk(rng) if body is None else body
        yaw = rng.uniform(-np.pi, np.pi) if yaw is None else yaw
        p = pose(self.skel, rng, legs, body, left, right)
        self.segments.append(Segment(kind, p, rng.uniform(*duration), yaw=yaw, osc=osc, tilt=tilt))

    def walk(self, left="down", right="down", speed=(1.0, 1.4), body=None, dist=1200.0,
             arm_swing=True, goal=None):
        rng = self.rng
        goal = _goal(rng, self.pos, dist) if goal is None else goal
        body = trunk(rng, flex=(0, 6), twist=3) if body is None else body
        p = pose(self.skel, rng, np.zeros(sk.N_ANGLES), body, left, right)
        speed = rng.uniform(*speed)
        # Expected duration (seconds), for planning only: the performer walks until it arrives.
        expected = np.linalg.norm(goal - self.pos) / (speed * 1000.0) + 1.0
        self.segments.append(Segment("walk", p, expected, goal=goal, speed=speed, arm_swing=arm_swing))
        self.pos = goal


def _pick(rng, options):
    return options[rng.integers(len(options))]


def _side_pair(rng, active, rest):
    """(left, right) arm names with `active` on a random side and `rest` on the other."""
    return (active, _pick(rng, rest)) if rng.random() < 0.5 else (_pick(rng, rest), active)


# One round of each action's script: the segments appended while the script is shorter than the
# sequence. step(sc, rng, r, chair): sc the Script, r the round's uniform draw, chair the seated
# actions' chair (None for the others). The draws' order is the generator's: changing it changes
# every synthetic dataset.
def _directions(sc, rng, r, chair):
    if r < 0.3:
        sc.walk(dist=700, speed=(0.6, 1.0))
    sc.stand(*_side_pair(rng, "point", ["down", "down", "bent", "hip", "pocket", "gesture"]),
             duration=(1.5, 3.5))


def _discussion(sc, rng, r, chair):
    if r < 0.15:
        sc.walk(dist=600, speed=(0.5, 0.9))
    left = _pick(rng, ["gesture", "gesture_high", "bent"])
    right = _pick(rng, ["gesture", "down", "hip", "cross"])
    if rng.random() < 0.5:
        left, right = right, left
    sc.stand(left, right, body=trunk(rng, flex=(0, 15), twist=12), duration=(1.0, 3.0))


def _eating(sc, rng, r, chair):
    arms = _side_pair(rng, "mouth", ["table", "table", "knee"]) if r < 0.55 else ("table", "table")
    body = trunk(rng, flex=(5, 30), look_down=(5, 30))
    sc.stand(*arms, legs=legs_chair(rng), body=body, duration=(1.2, 3.0),
             yaw=chair["yaw"], kind="chair")


def _greeting(sc, rng, r, chair):
    if r < 0.35:
        sc.walk(dist=1500, speed=(0.8, 1.3))
    kind = rng.random()
    if kind < 0.45:
        arms = _side_pair(rng, "wave", ["down", "bent"])
        side = "L" if arms[0] == "wave" else "R"
        sc.stand(*arms, duration=(1.5, 3.0), osc=[(side + "Shoulder_rot", 18, 2.0)])
    elif kind < 0.75:
        sc.stand(*_side_pair(rng, "shake", ["down"]), body=trunk(rng, flex=(10, 30)),
                 duration=(1.0, 2.5), osc=[("Spine_flex", 4, 1.5)])
    else:
        sc.stand("gesture", "gesture", duration=(1.0, 2.0))


def _phoning(sc, rng, r, chair):
    arms = _side_pair(rng, "ear", ["down", "hip", "bent", "gesture", "cross"])
    if r < 0.35:
        sc.walk(*arms, dist=900, speed=(0.5, 1.0), arm_swing=False)
    elif r < 0.45:
        sc.stand(*_side_pair(rng, "watch", ["watch"]), body=trunk(rng, look_down=(25, 45)))
    else:
        sc.stand(*arms, body=trunk(rng, twist=12))


def _photo(sc, rng, r, chair):
    if r < 0.35:
        sc.walk(dist=1000, speed=(0.6, 1.1))
    legs = legs_crouch(rng) if rng.random() < 0.35 else (legs_kneel(rng) if rng.random() < 0.15 else None)
    sc.stand("camera", "camera", legs=legs, body=trunk(rng, flex=(0, 25), look_down=(-10, 10)),
             duration=(1.5, 3.5))


def _posing(sc, rng, r, chair):
    legs = _pick(rng, [legs_stand, legs_wide, legs_lunge, legs_knee_lift, legs_stand])(rng)
    # Every candidate is drawn (the _side_pair ones consume draws) before one is picked.
    arms = _pick(rng, [("hip", "hip"), ("up", "up"), ("side", "side"), ("cross", "cross"),
                       _side_pair(rng, "up", ["hip", "down", "side"]),
                       _side_pair(rng, "point", ["hip", "down"]), ("behind", "behind")])
    body = trunk(rng, flex=(-10, 20), lat=10, twist=15)
    if r < 0.2:
        sc.walk(dist=800, speed=(0.6, 1.0))
    sc.stand(*arms, legs=legs, body=body, duration=(2.0, 4.0))


def _purchases(sc, rng, r, chair):
    arms = _pick(rng, [("carry", "carry"), _side_pair(rng, "bag", ["down", "carry"])])
    sc.walk(*arms, dist=1000, speed=(0.6, 1.1), arm_swing=False)
    if r < 0.5:
        sc.stand(*_side_pair(rng, "reach", ["down", "bag"]), duration=(1.0, 2.5))
    else:
        legs = legs_crouch(rng) if rng.random() < 0.5 else legs_stand(rng)
        sc.stand("reach", _pick(rng, ["down", "reach"]), legs=legs,
                 body=trunk(rng, flex=(35, 75), look_down=(10, 40)), duration=(1.0, 2.5))


def _sitting(sc, rng, r, chair):
    arms = _pick(rng, [("knee", "knee"), ("gesture", "knee"), ("cross", "cross"),
                       _side_pair(rng, "chin", ["knee", "table"]), ("table", "table"),
                       ("behind", "behind"), _side_pair(rng, "ear", ["knee", "table"])])
    body = trunk(rng, flex=(-15, 35), twist=12, look_down=(0, 25))
    sc.stand(*arms, legs=legs_chair(rng), body=body, duration=(2.0, 5.0),
             yaw=chair["yaw"], kind="chair")


def _sitting_down(sc, rng, r, chair):
    if r < 0.25:
        sc.walk(dist=800, speed=(0.5, 0.9))
    if r < 0.45:
        sc.stand(*_side_pair(rng, "floor", ["knee"]), legs=legs_kneel(rng),
                 body=trunk(rng, flex=(10, 40)), duration=(1.0, 2.0))
    arms = _pick(rng, [("floor", "floor"), ("hug_knees", "hug_knees"), ("knee", "knee"),
                       _side_pair(rng, "floor", ["knee", "gesture"])])
    lean = rng.uniform(-25, 20) if "floor" not in arms else rng.uniform(-30, -10)
    body = trunk(rng, flex=(lean - 5, lean + 5), look_down=(0, 20))
    sc.stand(*arms, legs=legs_floor(rng), body=body, duration=(2.5, 5.0), kind="floor")


def _smoking(sc, rng, r, chair):
    if r < 0.2:
        sc.walk(*_side_pair(rng, "bent", ["down"]), dist=800, speed=(0.5, 0.9))
    side_arms = _side_pair(rng, "mouth", ["cross", "down", "hip", "pocket"])
    sc.stand(*side_arms, duration=(1.0, 2.0))
    sc.stand(*[("bent" if a == "mouth" else a) for a in side_arms], duration=(1.5, 3.5),
             yaw=sc.segments[-1].yaw + rng.normal(0, 0.3))


def _waiting(sc, rng, r, chair):
    if r < 0.25:
        sc.walk(dist=800, speed=(0.5, 0.9))
    arms = _pick(rng, [("cross", "cross"), ("behind", "behind"), ("pocket", "pocket"),
                       ("down", "down"), ("hip", "hip"), _side_pair(rng, "watch", ["watch"])])
    body = trunk(rng, flex=(0, 10), lat=6, twist=10, look_down=(-10, 25))
    sc.stand(*arms, body=body, duration=(2.0, 4.5), osc=[("Neck_lat", 8, 0.3)])


def _walk_dog(sc, rng, r, chair):
    arms = _side_pair(rng, "leash", ["down", "bent"])
    sc.walk(*arms, speed=(0.5, 1.2), dist=900, arm_swing=False)
    if r < 0.35:
        sc.stand(*arms, legs=legs_crouch(rng) if rng.random() < 0.4 else None,
                 body=trunk(rng, flex=(20, 60), look_down=(20, 45)), duration=(1.0, 2.5))


def _walking(sc, rng, r, chair):
    sc.walk(speed=(1.1, 1.5), dist=1800)
    if r < 0.15:
        sc.stand("down", "down", duration=(0.8, 2.0))


def _walk_together(sc, rng, r, chair):
    body = trunk(rng, flex=(0, 5), twist=4)
    _set(body, "Spine_twist", rng.choice([-1, 1]) * rng.uniform(8, 20))
    _set(body, "Neck_lat", rng.normal(0, 8))
    arms = ("down", "down") if r < 0.7 else _side_pair(rng, "gesture", ["down"])
    sc.walk(*arms, speed=(0.8, 1.15), body=body, dist=1800)


ACTION_SCRIPTS = {
    "Directions": _directions, "Discussion": _discussion, "Eating": _eating, "Greeting": _greeting,
    "Phoning": _phoning, "Photo": _photo, "Posing": _posing, "Purchases": _purchases,
    "Sitting": _sitting, "SittingDown": _sitting_down, "Smoking": _smoking, "Waiting": _waiting,
    "WalkDog": _walk_dog, "Walking": _walking, "WalkTogether": _walk_together,
}
SEATED_ACTIONS = ("Sitting", "Eating")      # performed on a chair


def script_action(action, skel, height, rng, duration):
    """Segments for one sequence of `action` lasting about `duration` seconds."""
    if action not in ACTION_SCRIPTS:
        raise ValueError(f"no motion script for action {action!r}")
    step = ACTION_SCRIPTS[action]
    start = rng.uniform(-AREA, AREA) * 0.6
    sc = Script(skel, height, rng, start)
    chair = None
    if action in SEATED_ACTIONS:
        chair = dict(pos=np.array(start), yaw=rng.uniform(-np.pi, np.pi))
    while sum(s.duration for s in sc.segments) < duration:
        step(sc, rng, rng.random(), chair)
    return sc.segments, chair, start


# ============================================================================ performer
def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def perform(segments, start, rng, fps=FPS, blend=0.6):
    """Per-frame body angles (T, N_ANGLES) (root rotation left zero), root xy (T,2) mm, yaw (T,)
    and forward tilt (T,) radians from a script starting at floor point `start`."""
    pos = np.array(start, float)
    yaw = segments[0].yaw if segments[0].yaw is not None else rng.uniform(-np.pi, np.pi)
    frames_pose, frames_xy, frames_yaw, frames_gait, frames_tilt, frames_phase = [], [], [], [], [], []
    frames_swing, frames_seg = [], []
    phase = rng.uniform(0, 2 * np.pi)
    dt = 1.0 / fps
    for k, seg in enumerate(segments):
        if seg.kind == "walk":
            # Turn toward the goal at a bounded rate while walking; slow down near the goal.
            speed = seg.speed * 1000.0
            stride = 1450.0 * seg.speed / 1.3
            n = 0
            while True:
                delta = seg.goal - pos
                dist = np.linalg.norm(delta)
                if dist < 150 or n > 20 * fps:
                    break
                want = np.arctan2(-delta[0], delta[1])      # heading of +y rotated by yaw
                yaw += np.clip(_wrap(want - yaw), -2.2 * dt, 2.2 * dt)
                v = speed * min(1.0, dist / 500.0 + 0.3) * max(0.3, np.cos(_wrap(want - yaw)))
                pos = pos + v * dt * np.array([-np.sin(yaw), np.cos(yaw)])
                phase += 2 * np.pi * v * dt / stride
                frames_pose.append(seg.pose)
                frames_xy.append(pos.copy())
                frames_yaw.append(yaw)
                frames_gait.append(min(1.0, v / 700.0))
                frames_phase.append(phase)
                frames_tilt.append(0.05 * v / 1000.0)
                frames_swing.append(seg.arm_swing)
                frames_seg.append(k)
                n += 1
        else:
            n = max(1, int(round(seg.duration * fps)))
            start_yaw = yaw
            turn = _wrap(seg.yaw - start_yaw)
            for i in range(n):
                yaw = start_yaw + turn * _smoothstep(i / (1.2 * fps))
                frames_pose.append(seg.pose)
                frames_xy.append(pos.copy())
                frames_yaw.append(yaw)
                # A few steps while turning on the spot.
                turning = abs(turn) > 0.5 and i < 1.2 * fps
                frames_gait.append(0.35 if turning else 0.0)
                phase += 2 * np.pi * dt * (0.9 if turning else 0.0)
                frames_phase.append(phase)
                frames_tilt.append(seg.tilt)
                frames_swing.append(True)
                frames_seg.append(k)
    T = len(frames_pose)
    poses = np.array(frames_pose)
    # Cross-fade between successive key poses: a moving average (Hann window) over `blend`
    # seconds of the piecewise-constant pose track; the gait weight is smoothed the same way.
    width = max(1, int(blend * fps))
    kernel = np.hanning(width + 2)[1:-1]
    kernel /= kernel.sum()
    padded = np.concatenate([np.repeat(poses[:1], width, 0), poses, np.repeat(poses[-1:], width, 0)])
    smooth = np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same"), 0, padded)[width:width + T]
    amount = np.convolve(np.pad(np.array(frames_gait), width, mode="edge"), kernel, mode="same")[width:width + T]
    swing = np.array(frames_swing, dtype=float)
    g = gait(np.array(frames_phase), amount)
    arm_cols = [sk.angle_index(s + n) for s in _SIDES for n in ("Shoulder_flex", "Elbow_flex", "Clavicle_prot")]
    g[:, arm_cols] *= (0.3 + 0.7 * swing)[:, None]          # arms holding something swing less
    # Legs follow the gait where walking: blend the standing legs out as the gait comes in.
    leg_cols = [sk.angle_index(s + n) for s in _SIDES for n in ("Hip_flex", "Hip_abd", "Hip_rot", "Knee_flex")]
    smooth[:, leg_cols] *= (1 - amount)[:, None]
    smooth[:, leg_cols] += np.array([0, 4, -4, 0] * 2)[None, :] * _D * amount[:, None]
    angles = smooth + g
    # Oscillations of a segment (waving, nodding) over its frames, faded in and out.
    seg_of_frame = np.array(frames_seg)
    for k, seg in enumerate(segments):
        frames = np.flatnonzero(seg_of_frame == k)
        if len(frames) == 0:
            continue
        t = np.arange(len(frames)) / fps
        envelope = np.sin(np.pi * np.arange(len(frames)) / len(frames))
        for name, amp, hz in seg.osc:
            angles[frames, sk.angle_index(name)] += amp * _D * np.sin(2 * np.pi * hz * t) * envelope
    tilt = np.convolve(np.pad(np.array(frames_tilt), width, mode="edge"), kernel, mode="same")[width:width + T]
    return angles, np.array(frames_xy), np.array(frames_yaw), tilt


def jitter(rng, T, fps=FPS, amp_deg=2.5):
    """Smooth random angle offsets (T, N_ANGLES): a sum of slow sinusoids per angle."""
    t = np.arange(T) / fps
    out = np.zeros((T, sk.N_ANGLES))
    for _ in range(3):
        freq = rng.uniform(0.1, 0.8, sk.N_ANGLES)
        ph = rng.uniform(0, 2 * np.pi, sk.N_ANGLES)
        amp = rng.uniform(0.3, 1.0, sk.N_ANGLES) * amp_deg * _D / 2
        out += amp * np.sin(2 * np.pi * freq * t[:, None] + ph)
    out[:, sk.ROOT_ANGLES] = 0.0
    return out


def rotz(yaw):
    c, s = np.cos(yaw), np.sin(yaw)
    z, o = np.zeros_like(yaw), np.ones_like(yaw)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def rotx(a):
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


# Contact points for the root height: (joint, clearance above the floor as a fraction of the
# body height). The ankle joint sits 0.039 H above the floor (data.skeleton); knees, buttocks
# (below the hip joint) and wrists (hands on the floor) rest on their own padding.
_CONTACTS = ((_J["LFoot"], ANKLE_CLEARANCE), (_J["RFoot"], ANKLE_CLEARANCE), (_J["LKnee"], 0.03), (_J["RKnee"], 0.03),
             (_J["Hip"], 0.055), (_J["LWrist"], 0.025), (_J["RWrist"], 0.025))


def generate_motion(action, skel, height, rng, duration=30.0, fps=FPS):
    """A 50 Hz motion of `action` for a subject with skeleton `skel`.

    Returns dict(joints (T,17,3) world mm z up, angles (T,N_ANGLES) radians within the limits,
    chair None or dict(pos (2,), yaw, seat_height)).
    """
    segments, chair, start = script_action(action, skel, height, rng, duration)
    angles, xy, yaw, tilt = perform(segments, start, rng, fps=fps)
    angles = angles + jitter(rng, len(angles), fps)
    root = rotz(yaw) @ rotx(-tilt)
    angles[:, sk.ROOT_ANGLES] = sk.matrix_to_rotvec(root)
    angles = sk.clip_angles(angles)
    joints = skel.forward(angles)
    lowest = np.max([h * height - joints[:, j, 2] for j, h in _CONTACTS], axis=0)
    root_z = lowest
    if chair is not None:
        chair["seat_height"] = SEAT_HEIGHT * height
        root_z = np.maximum(root_z, (SEAT_HEIGHT + SEAT_OFFSET) * height)
    joints = joints + np.concatenate([xy, root_z[:, None]], axis=1)[:, None, :]
    return dict(joints=joints, angles=angles, chair=chair)

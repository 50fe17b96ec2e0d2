"""A small ray caster that draws a person (and a room) straight into a square crop of a camera image.

The body is a set of volumes around the 17 joints: capsules for the limbs and neck, ellipsoids for
the torso, pelvis, head (with hair, eyes, nose, mouth and ears), hands and feet, plus optional
boxes (a chair), all in camera coordinates (mm). Every crop pixel is a ray from the camera centre
through the lens-distorted pixel, so the picture agrees with data.h36m.project: the projected
ground-truth joints land on the drawn body. Each primitive is tested only against the pixels of
its screen bounding box, and a z-buffer keeps the nearest surface, so depth order and
self-occlusion are exact.

Shading: wrapped Lambert + ambient + a darker rim, a room with baked floor and wall textures
(lit once when the room is made), a contact shadow, per-camera white balance, slight blur, sensor
noise. background() draws the room alone, as it appears behind a person.
"""
import numpy as np

from data import h36m
from data.dataset import IMAGE_SIZE
from data.skeleton import REST_GEOMETRY

# The Nose->Head bone's lean back from the head's up axis in the skeleton's rest geometry.
_HEAD_BACK = REST_GEOMETRY["head_neck_angle_deg"] - REST_GEOMETRY["neck_tilt_deg"]

# Materials: rows of BodyStyle.albedo.
SKIN, SHIRT, PANTS, SHOES, HAIR, EYE, LIPS, CHAIR, SLEEVE = range(9)
N_MATERIALS = 9


# ============================================================================ primitives
class Primitive:
    """kind 'ellipsoid' (centre c, orthonormal axes A (3,3) as columns, radii r (3,)),
    'capsule' (segment a-b, radius r) or 'box' (centre c, axes A, half extents r); mm."""
    __slots__ = ("kind", "c", "A", "r", "a", "b", "material", "head")

    def __init__(self, kind, material, c=None, A=None, r=None, a=None, b=None, head=False):
        self.kind, self.material, self.head = kind, material, head
        self.c, self.A, self.r, self.a, self.b = c, A, r, a, b

    def corners(self):
        """(8,3) corners of a box that bounds the primitive (for screen culling)."""
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
        if self.kind == "capsule":
            lo = np.minimum(self.a, self.b) - self.r
            hi = np.maximum(self.a, self.b) + self.r
            return (lo + hi) / 2 + signs * (hi - lo) / 2
        return self.c + (signs * self.r) @ self.A.T


def ellipsoid(c, A, r, material, head=False):
    return Primitive("ellipsoid", material, c=np.asarray(c, float), A=np.asarray(A, float),
                     r=np.asarray(r, float), head=head)


def capsule(a, b, r, material):
    return Primitive("capsule", material, a=np.asarray(a, float), b=np.asarray(b, float), r=float(r))


def box(c, A, half, material):
    return Primitive("box", material, c=np.asarray(c, float), A=np.asarray(A, float),
                     r=np.asarray(half, float))


def _unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def frame_from(axis, hint):
    """Orthonormal axes (3,3): third column `axis`, first column `hint` made orthogonal to it."""
    z = _unit(np.asarray(axis, float))
    x = np.asarray(hint, float) - np.dot(hint, z) * z
    if np.linalg.norm(x) < 1e-6:          # hint parallel to the axis: any perpendicular will do
        x = np.cross(z, [1.0, 0, 0]) if abs(z[0]) < 0.9 else np.cross(z, [0, 1.0, 0])
    x = _unit(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


# ============================================================================ the body
class BodyStyle:
    """Per-subject appearance (plain data, pickles to worker processes).

    height (mm), girth (~0.85 slim .. 1.25 broad), albedo (N_MATERIALS,3) in 0..1,
    hair_cover (0 short .. 1 long), long_sleeves (bool), stripes (amplitude, period mm).
    """

    def __init__(self, height, girth, albedo, hair_cover, long_sleeves, stripes):
        self.height = float(height)
        self.girth = float(girth)
        self.albedo = np.asarray(albedo, float)
        self.hair_cover = float(hair_cover)
        self.long_sleeves = bool(long_sleeves)
        self.stripes = tuple(float(v) for v in stripes)


def body_primitives(joints, style):
    """Primitives of a body given its 17 joints (17,3) in camera coordinates (mm)."""
    J = np.asarray(joints, float)
    g = style.girth
    s = style.height / 1750.0
    hip, rhip, rknee, rfoot, lhip, lknee, lfoot, spine, thorax, nose, head, \
        lsho, lelb, lwri, rsho, relb, rwri = J
    # Torso frame: left, forward, up.
    left = _unit((lsho - rsho) + (lhip - rhip))
    up = _unit(thorax - hip)
    fwd = _unit(np.cross(left, up))
    left = np.cross(up, fwd)
    torso_axes = np.stack([left, fwd, up], axis=1)
    shoulder_w = np.linalg.norm(lsho - rsho) / 2
    hip_w = np.linalg.norm(lhip - rhip) / 2
    prims = [
        # Chest (to the shoulders), belly, pelvis: flattened front to back.
        ellipsoid(thorax + (spine - thorax) * 0.4, frame_from(thorax - spine, left),
                  (shoulder_w * 0.95, 100 * g * s, np.linalg.norm(thorax - spine) * 0.78), SHIRT),
        ellipsoid((spine + hip) / 2 + up * 25 * s, frame_from(spine - hip, left),
                  (hip_w * 0.8 + 30 * g * s, 92 * g * s, np.linalg.norm(spine - hip) * 0.72), SHIRT),
        ellipsoid(hip - up * 15 * s, torso_axes, (hip_w + 60 * g * s, 100 * g * s, 120 * s), PANTS),
    ]
    # Head: the Neck/Nose joint is the nose, at the face; the Nose->Head bone leans back from the
    # head's own up axis by the skeleton's rest angle (data.skeleton.REST_GEOMETRY), in the plane
    # of the bone and the torso's front, which the face looks toward as far as it can.
    bone = _unit(head - nose)
    front = _unit(fwd - np.dot(fwd, bone) * bone)
    head_up = np.cos(_HEAD_BACK) * bone + np.sin(_HEAD_BACK) * front
    head_fwd = np.cos(_HEAD_BACK) * front - np.sin(_HEAD_BACK) * bone
    head_axes = np.stack([np.cross(head_up, head_fwd), head_fwd, head_up], axis=1)
    hs = np.array([76.0, 96.0, 112.0]) * s
    # Placed with the top of the head just above the Head joint and the face's front at the
    # Neck/Nose joint (which lies low on the face, the drawn nose above it: the skeleton puts it
    # halfway between chin and eyes).
    rise = np.clip(np.dot(head - nose, head_up) - hs[2] * 0.92, -0.9 * hs[2], 0.9 * hs[2])   # centre above the joint
    head_c = nose - head_fwd * hs[1] * np.sqrt(1.0 - (rise / hs[2]) ** 2) + head_up * rise
    hx, hy, hz = head_axes.T
    prims.append(capsule(thorax + up * 10 * s, head_c - head_up * 96 * s, 50 * s * g, SKIN))
    prims.append(ellipsoid(head_c, head_axes, hs, SKIN, head=True))
    for side in (-1.0, 1.0):
        # Eyes on the face and ears on the sides make the facing direction visible.
        prims.append(ellipsoid(head_c + hy * hs[1] * 0.84 + hx * side * hs[0] * 0.4 + hz * hs[2] * 0.1,
                               head_axes, np.array([14.0, 9.0, 10.0]) * s, EYE))
        prims.append(ellipsoid(head_c + hx * side * hs[0] * 0.96 - hz * hs[2] * 0.05,
                               head_axes, np.array([14.0, 20.0, 28.0]) * s, SKIN))
    prims.append(ellipsoid(head_c + hy * hs[1] * 0.98 - hz * hs[2] * 0.12, head_axes,
                           np.array([12.0, 22.0, 20.0]) * s, SKIN))                       # nose
    prims.append(ellipsoid(head_c + hy * hs[1] * 0.86 - hz * hs[2] * 0.45, head_axes,
                           np.array([24.0, 9.0, 8.0]) * s, LIPS))                         # mouth
    # Arms; both sides share colours, as on real people.
    fore = SLEEVE if style.long_sleeves else SKIN
    for sho, elb, wri in ((lsho, lelb, lwri), (rsho, relb, rwri)):
        prims.append(capsule(sho, elb, 50 * g * s, SHIRT))
        prims.append(capsule(elb, wri, 40 * g * s, fore))
        hand_dir = _unit(wri - elb)
        prims.append(ellipsoid(wri + hand_dir * 60 * s, frame_from(hand_dir, fwd),
                               np.array([48.0, 26.0, 78.0]) * s, SKIN))
    # Legs and feet: the foot points forward, perpendicular to the shin.
    for hp, kn, ft in ((lhip, lknee, lfoot), (rhip, rknee, rfoot)):
        prims.append(capsule(hp + (hip - hp) * 0.15, kn, 72 * g * s, PANTS))
        prims.append(capsule(kn, ft, 52 * g * s, PANTS))
        shin = _unit(kn - ft)
        toe = _unit(fwd - np.dot(fwd, shin) * shin)
        prims.append(ellipsoid(ft + toe * 75 * s - shin * 38 * s, frame_from(toe, np.cross(shin, toe)),
                               np.array([52.0, 42.0, 130.0]) * s, SHOES))
    return prims


def chair_primitives(seat_xy, yaw, seat_height, R, T):
    """Boxes of a chair (seat, backrest, four legs) whose seat top is centred at floor point
    seat_xy (mm, world) and `seat_height` mm high, facing heading `yaw`; camera coordinates."""
    fwd = np.array([-np.sin(yaw), np.cos(yaw), 0.0])       # the heading convention of data.synth.motion
    up = np.array([0.0, 0.0, 1.0])
    left = np.cross(up, fwd)
    axes = np.stack([left, fwd, up], axis=1)
    top = np.array([seat_xy[0], seat_xy[1], seat_height])
    parts = [(top - up * 25, (230, 220, 25)),
             (top - fwd * 215 + up * 250, (220, 22, 250))]
    leg_half = (seat_height - 50) / 2
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append((top + left * sx * 200 + fwd * sy * 190 - up * (50 + leg_half), (20, 20, leg_half)))
    axes_cam = R @ axes
    return [box(R @ (centre - T), axes_cam, half, CHAIR) for centre, half in parts]


# ============================================================================ ray casting
def crop_rays(camera, crop_box, size, grid=9):
    """Ray directions (size,size,3), z = 1, through the pixel centres of a square crop.

    crop_box = (x0, y0, side) in full-image pixels. Undistortion is exact on a grid x grid
    lattice and bilinear in between: the lens model is smooth, so the error is far below a pixel.
    """
    x0, y0, side = crop_box
    nodes = np.linspace(0.5, size - 0.5, grid) * (side / size)
    uu, vv = np.meshgrid(x0 + nodes, y0 + nodes)
    coarse = h36m.pixel_rays(np.stack([uu, vv], axis=-1), camera)[..., :2]
    pos = np.arange(size) / (size - 1) * (grid - 1)        # each pixel's place on the node lattice
    i0 = np.minimum(pos.astype(int), grid - 2)
    f = (pos - i0)[:, None]
    rows = coarse[i0] * (1 - f[..., None]) + coarse[i0 + 1] * f[..., None]          # (size, grid, 2)
    cols = rows[:, i0] * (1 - f[None, :, :]) + rows[:, i0 + 1] * f[None, :, :]      # (size, size, 2)
    return np.concatenate([cols, np.ones((size, size, 1))], axis=-1)


def _screen_rects(prims, camera, crop_box, size, pad=1):
    """Crop-pixel rectangles (i0, i1, j0, j1) covering each primitive (None if off-screen)."""
    corners = np.stack([p.corners() for p in prims])                    # (P, 8, 3)
    near = (corners[..., 2] <= 10.0).any(axis=1)
    corners[..., 2] = np.maximum(corners[..., 2], 10.0)
    x0, y0, side = crop_box
    ij = (h36m.project(corners, camera) - [x0, y0]) * (size / side)       # (P, 8, 2)
    lo = np.floor(ij.min(axis=1)).astype(int) - pad
    hi = np.ceil(ij.max(axis=1)).astype(int) + pad
    rects = []
    for k in range(len(prims)):
        if near[k]:
            rects.append((0, size, 0, size))   # near or behind the camera plane: test every pixel
            continue
        i0, i1 = max(lo[k, 1], 0), min(hi[k, 1], size)
        j0, j1 = max(lo[k, 0], 0), min(hi[k, 0], size)
        rects.append((i0, i1, j0, j1) if i0 < i1 and j0 < j1 else None)
    return rects


def _first_root(a, b, c):
    """Smaller root t of a t^2 - 2 b t + c = 0 where real and positive, else inf."""
    disc = b * b - a * c
    with np.errstate(invalid="ignore", divide="ignore"):     # a = 0: a ray along a capsule's axis
        t = (b - np.sqrt(disc)) / a
    return np.where((disc > 0) & (t > 0), t, np.inf)


def _hit_ellipsoid(D, p):
    """Ray parameters (h,w) and unit normals (h,w,3) of rays t*D against an ellipsoid."""
    M = p.A / p.r                        # unit-sphere coordinates: q = (x - c) @ M
    Md = D @ M
    Mc = p.c @ M
    t = _first_root(np.einsum("...k,...k->...", Md, Md), Md @ Mc, Mc @ Mc - 1.0)
    q = Md * np.where(np.isfinite(t), t, 0.0)[..., None] - Mc
    # The gradient of |q|^2 with respect to x is M q (up to a factor 2).
    return t, _unit(q @ M.T), q


def _hit_capsule(D, p):
    """Ray parameters and normals of a capsule: side of the cylinder, or one of the end spheres."""
    axis = p.b - p.a
    length = np.linalg.norm(axis)
    u = axis / length
    r2 = p.r * p.r
    dd = np.einsum("...k,...k->...", D, D)
    du = D @ u
    # Cylinder side: |t d_perp - a_perp|^2 = r^2 with d_perp = d - (d.u) u, a_perp likewise.
    a_perp = p.a - np.dot(p.a, u) * u
    d_perp_sq = dd - du * du
    t_cyl = _first_root(d_perp_sq, D @ a_perp, np.dot(a_perp, a_perp) - r2)
    s = t_cyl * du - np.dot(p.a, u)
    t_cyl = np.where((s >= 0) & (s <= length), t_cyl, np.inf)
    t_a = _first_root(dd, D @ p.a, np.dot(p.a, p.a) - r2)
    t_b = _first_root(dd, D @ p.b, np.dot(p.b, p.b) - r2)
    t = np.minimum(t_cyl, np.minimum(t_a, t_b))
    x = D * np.where(np.isfinite(t), t, 0.0)[..., None]
    s = np.clip((x - p.a) @ u, 0.0, length)
    return t, _unit(x - p.a - s[..., None] * u), None


def _hit_box(D, p):
    """Ray parameters and outward normals of an oriented box (slab method)."""
    o = -p.c @ p.A                       # the camera centre in box coordinates
    d = D @ p.A
    d = np.where(np.abs(d) < 1e-12, 1e-12, d)
    t1 = (-p.r - o) / d
    t2 = (p.r - o) / d
    tnear = np.minimum(t1, t2)
    t_enter = tnear.max(axis=-1)
    t_exit = np.maximum(t1, t2).min(axis=-1)
    t = np.where((t_exit >= t_enter) & (t_enter > 0), t_enter, np.inf)
    axis = np.argmax(tnear, axis=-1)
    normal = np.zeros(d.shape)
    np.put_along_axis(normal, axis[..., None],
                      -np.sign(np.take_along_axis(d, axis[..., None], axis=-1)), axis=-1)
    return t, normal @ p.A.T, None


_HIT = {"ellipsoid": _hit_ellipsoid, "capsule": _hit_capsule, "box": _hit_box}


def _head_material(q, hair_cover):
    # q: unit-sphere coordinates in the head frame (x left, y forward, z up). Hair covers the top
    # and the back; the face stays skin. hair_cover moves the hair's lower edge down the back.
    hair = (q[..., 2] > 0.5 - 0.3 * q[..., 1]) | (q[..., 1] < -0.2 + 0.3 * q[..., 2] - hair_cover * 0.7)
    return np.where(hair, HAIR, SKIN)


def rasterize(prims, rays, camera, crop_box, hair_cover=0.5):
    """Z-buffer the primitives over rays (H,W,3). Returns depth (H,W) (inf = nothing hit),
    material (H,W) int and normals (H,W,3) in camera coordinates."""
    size = rays.shape[0]
    depth = np.full((size, size), np.inf)
    material = np.full((size, size), -1, dtype=np.int64)
    normal = np.zeros((size, size, 3))
    for p, rect in zip(prims, _screen_rects(prims, camera, crop_box, size)):
        if rect is None:
            continue
        i0, i1, j0, j1 = rect
        t, n, q = _HIT[p.kind](rays[i0:i1, j0:j1], p)
        zb = depth[i0:i1, j0:j1]
        closer = t < zb
        if not closer.any():
            continue
        zb[closer] = t[closer]
        mat = _head_material(q, hair_cover)[closer] if p.head else p.material
        material[i0:i1, j0:j1][closer] = mat
        normal[i0:i1, j0:j1][closer] = n[closer]
    return depth, material, normal


# ============================================================================ the room
class Room:
    """A box-shaped room (world mm, z up, floor at z = 0) with baked, lit textures.

    Room(rng, light) draws the room's look (floor kind and colours, wall colours, panels,
    posters / doors / shelves) and bakes floor and wall textures at `texel` mm once, so that each
    image only looks texels up.
    """

    def __init__(self, rng, light, texel=40.0):
        self.half = np.array([rng.uniform(4300, 5500), rng.uniform(5800, 7000), rng.uniform(3000, 3800)])
        self.texel = texel
        hx, hy, hz = self.half
        base = rng.uniform(0.15, 0.6)
        c1 = np.clip(base * rng.uniform(0.75, 1.1, 3), 0.04, 0.9)
        c2 = np.clip(c1 * rng.uniform(0.6, 1.4) + rng.normal(0, 0.07, 3), 0.03, 0.95)
        noise = rng.random((4, 64, 64))
        # Floor texture over [-hx, hx] x [-hy, hy].
        x = np.arange(-hx, hx, texel) + texel / 2
        y = np.arange(-hy, hy, texel) + texel / 2
        X, Y = np.meshgrid(x, y, indexing="ij")
        kind = rng.integers(3)
        tile = rng.uniform(300, 900)
        if kind == 0:                     # tiles with dark seams
            checker = ((np.floor(X / tile) + np.floor(Y / tile)) % 2)[..., None]
            floor = c1 * (1 - checker) + c2 * checker
            seam = np.minimum(np.abs(X / tile % 1 - 0.5), np.abs(Y / tile % 1 - 0.5)) > 0.46
            floor = floor * (1 - 0.35 * seam[..., None])
        elif kind == 1:                   # planks
            plank = np.floor(Y / (tile * 0.3))
            mix = _value_noise(plank * 3.1, X / 1500 + plank * 7.7, noise[3])[..., None]
            floor = c1 * (1 - mix) + c2 * mix
            floor = floor * (1 - 0.3 * (Y / (tile * 0.3) % 1 > 0.9))[..., None]
        else:                             # carpet: fine grain
            floor = c1 * (0.75 + 0.5 * noise[2][np.arange(len(x))[:, None] % 64, np.arange(len(y)) % 64])[..., None]
        floor = floor * (0.8 + 0.35 * _value_noise(X / 900, Y / 900, noise[0]))[..., None]
        self.floor = floor * (light["ambient"] + light["diffuse"] * max(light["dir"][2], 0.2))
        # Walls 0/1 at x = +hx / -hx (running along y), walls 2/3 at y = +hy / -hy (along x),
        # stacked in one array (4, along, up, 3) so one gather serves every wall pixel.
        colours = np.clip(rng.uniform(0.12, 0.8, (4, 1)) * rng.uniform(0.75, 1.0, (4, 3))
                          + rng.normal(0, 0.04, (4, 3)), 0.03, 0.95)
        panel = rng.uniform(600, 1600)
        z = np.arange(0, hz, texel) + texel / 2
        S, Z = np.meshgrid(y if len(y) >= len(x) else x, z, indexing="ij")
        self.walls = np.empty((4,) + S.shape + (3,))
        for w in range(4):
            tex = np.broadcast_to(colours[w], S.shape + (3,)).copy()
            tex *= (1 - 0.2 * (S / panel % 1 > 0.97))[..., None]
            tex *= (0.85 + 0.3 * _value_noise(S / 700 + 17 * w, Z / 700, noise[1]))[..., None]
            tex *= (1 - 0.3 * (Z < 120))[..., None]                     # skirting board
            for _ in range(rng.integers(3, 7)):                         # posters, doors, shelves
                s0, z0 = rng.uniform(-hx, hx - 400), rng.uniform(0, 1900)
                inside = (S > s0) & (S < s0 + rng.uniform(300, 1900)) & (Z > z0) & (Z < z0 + rng.uniform(300, 2100))
                colour = np.clip(colours[w] * rng.uniform(0.3, 1.6) + rng.normal(0, 0.2, 3), 0.02, 0.95)
                grain = noise[3][(S[inside] / texel).astype(int) % 64, (Z[inside] / 200).astype(int) % 64]
                tex[inside] = colour * (0.85 + 0.3 * grain)[:, None]
            facing = abs(light["dir"][0 if w < 2 else 1])
            self.walls[w] = tex * (light["ambient"] + 0.6 * light["diffuse"] * facing)
        self.ceiling = 0.5 * (light["ambient"] + light["diffuse"])

    def shade(self, d, origin, shadow=None):
        """Colours (n,3) of the room along world rays d (n,3) from `origin` (3,) mm; shadow: a
        person's contact shadow (floor point (2,) mm, radius mm) or None (the empty room)."""
        hx, hy, hz = self.half
        lo, hi = np.array([-hx, -hy, 0.0]), self.half
        with np.errstate(divide="ignore", invalid="ignore"):
            t_axes = np.where(d > 0, (hi - origin) / d, (lo - origin) / d)
        t_axes = np.where(t_axes > 0, t_axes, np.inf)
        face = np.argmin(t_axes, axis=-1)             # 0: an x wall, 1: a y wall, 2: floor/ceiling
        p = origin + d * t_axes.min(axis=-1)[:, None]
        cells = ((p + [hx, hy, 0.0]) / self.texel).astype(np.int64)
        colour = np.empty(d.shape)
        floor = (face == 2) & (d[:, 2] < 0)
        wall = face < 2
        if floor.any():
            fx = np.clip(cells[floor, 0], 0, self.floor.shape[0] - 1)
            fy = np.clip(cells[floor, 1], 0, self.floor.shape[1] - 1)
            colour[floor] = self.floor[fx, fy]
            if shadow is not None:
                (sx, sy), radius = shadow
                r2 = ((p[floor, 0] - sx) ** 2 + (p[floor, 1] - sy) ** 2) / radius ** 2
                colour[floor] *= (1 - 0.45 * np.exp(-r2))[:, None]
        if wall.any():
            f = face[wall]
            which = 2 * f + (p[wall, f] < 0)          # wall index: x>0, x<0, y>0, y<0
            along = np.where(f == 0, cells[wall, 1], cells[wall, 0])
            up = (p[wall, 2] / self.texel).astype(np.int64)
            colour[wall] = self.walls[which, np.clip(along, 0, self.walls.shape[1] - 1),
                                      np.clip(up, 0, self.walls.shape[2] - 1)]
        colour[(face == 2) & ~floor] = self.ceiling
        return colour


def _value_noise(u, v, grid):
    """Smooth noise in [0,1] at (u, v) (in grid cells): bilinear, smoothstep-eased, periodic grid."""
    g = grid.shape[0]
    iu, iv = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    fu, fv = u - iu, v - iv
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
    iu, iv = iu % g, iv % g
    ju, jv = (iu + 1) % g, (iv + 1) % g
    return (grid[iu, iv] * (1 - fu) * (1 - fv) + grid[ju, iv] * fu * (1 - fv)
            + grid[iu, jv] * (1 - fu) * fv + grid[ju, jv] * fu * fv)


# ============================================================================ the image
def _blur3(img, weight):
    """Mix the image with its 3x3 binomial blur (edges replicated); weight in [0, 1]."""
    p = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]
    b = (h[:-2] + 2 * h[1:-1] + h[2:]) * (1 / 16)
    return img + weight * (b - img)


def contact_shadow(joints, R, T, style):
    """The soft shadow a person casts on the floor: (floor point (2,) below the root, radius), mm.
    joints (17,3) camera coordinates; R, T the world->camera extrinsics."""
    return (R.T @ joints[0] + T)[:2], 420.0 * style.height / 1750


def render(joints, camera, crop_box, R, T, style, room, light, rng, size=IMAGE_SIZE, extra=()):
    """Render a person into a square crop. Returns uint8 (size,size,3).

    joints (17,3): camera coordinates, mm. crop_box: (x0, y0, side) in full-image pixels.
    R, T: world->camera extrinsics (x_cam = R (x_world - T)). style: BodyStyle. room: Room.
    light: dict(dir (3,) unit world vector towards the light, ambient, diffuse, gains (3,) white
    balance, blur in [0,1], noise (std of the sensor noise, 0..255 levels)). rng: Generator for
    the sensor noise. extra: more primitives in camera coordinates (a chair).
    """
    rays = crop_rays(camera, crop_box, size)
    prims = body_primitives(joints, style) + list(extra)
    depth, material, normal = rasterize(prims, rays, camera, crop_box, style.hair_cover)
    hit = np.isfinite(depth)
    # Body shading on every pixel (cheaper than gathering the hit ones); the room fills the rest.
    view = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
    lambert = np.clip((normal @ (R @ light["dir"]) + 0.3) / 1.3, 0, None)    # wrapped: softer
    rim = 0.6 + 0.4 * np.clip(-np.einsum("...k,...k->...", normal, view), 0, 1)  # darker outline
    albedo = style.albedo[np.maximum(material, 0)]
    if style.stripes[0] > 0:
        # Horizontal stripes at fixed world heights: they bend around the body (a shape cue).
        height = (rays @ R[:, 2]) * np.where(hit, depth, 0.0) + T[2]   # world z of x = t d
        stripe = (material == SHIRT) & (np.sin(height * (2 * np.pi / style.stripes[1])) > 0)
        albedo = albedo * (1 - style.stripes[0] * stripe)[..., None]
    image = albedo * ((light["ambient"] + light["diffuse"] * lambert) * rim)[..., None]
    if not hit.all():
        image[~hit] = room.shade(rays[~hit] @ R, T, contact_shadow(joints, R, T, style))
    return _expose(image, light, rng)


def background(camera, crop_box, R, T, room, light, rng=None, size=IMAGE_SIZE, shadow=None):
    """The room alone in a square crop, as render() would draw it behind a person. uint8 (size,size,3).

    light as in render(); 'blur' and 'noise' (with rng) are applied only when present. shadow:
    a contact_shadow() or None for the empty room.
    """
    rays = crop_rays(camera, crop_box, size)
    image = room.shade(rays.reshape(-1, 3) @ R, T, shadow).reshape(size, size, 3)
    return _expose(image, light, rng)


def _expose(image, light, rng):
    """Linear colours (H,W,3) -> uint8 through the camera: white balance and exposure (gains), the
    lens blur, the sensor noise (when light has them and rng is given)."""
    image = (image * (255.0 * light["gains"])).astype(np.float32)
    if "blur" in light:
        image = _blur3(image, np.float32(light["blur"]))
    if rng is not None and "noise" in light:
        image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(light["noise"])
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)

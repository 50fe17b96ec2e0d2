import numpy as np
import pytest

from data import h36m
from data.synth import motion, render
from data.synth.subjects import SubjectProfile


# ---------------------------------------------------------------- rendering
def test_rendered_body_covers_its_projected_joints():
    profile = SubjectProfile("S7", 0)
    m = motion.generate_motion("Directions", profile.skeleton, profile.height, np.random.default_rng(1), 10)
    R, T = h36m.extrinsics("S7", "60457274")
    pose = h36m.world_to_camera(m["joints"][100], R, T)
    crop = h36m.square_box(h36m.project(pose, "60457274"), 0.2)
    rays = render.crop_rays("60457274", crop, 128)
    depth, material, normal = render.rasterize(render.body_primitives(pose, profile.style), rays, "60457274", crop)
    uv = (h36m.project(pose, "60457274") - crop[:2]) * 128 / crop[2]
    assert (uv > 0).all() and (uv < 128).all()
    for j in (0, 7, 8, 9, 10):              # hip, spine, thorax, nose, head top (just inside)
        i, k = int(uv[j, 1]), int(uv[j, 0])
        hits = np.isfinite(depth[max(i - 1, 0):i + 2, max(k - 1, 0):k + 2])
        assert hits.any(), h36m.JOINT_NAMES[j]
    # At the hip pixel the nearest surface is in front of the joint (the body or an arm), not behind.
    i, k = int(uv[0, 1]), int(uv[0, 0])
    z = depth[i, k]                         # rays have z = 1, so t is the depth
    assert pose[0, 2] - 800 < z < pose[0, 2]
    assert (np.abs(np.linalg.norm(normal[np.isfinite(depth)], axis=-1) - 1) < 1e-6).all()


def test_crop_rays_match_exact_undistortion():
    crop = (620.0, 150.0, 380.0)
    rays = render.crop_rays("58860488", crop, 128)
    i, j = np.meshgrid(np.arange(128), np.arange(128), indexing="ij")
    pixels = np.stack([crop[0] + (j + 0.5) * crop[2] / 128, crop[1] + (i + 0.5) * crop[2] / 128], axis=-1)
    exact = h36m.pixel_rays(pixels, "58860488")
    # Within 5% of a crop pixel (one crop pixel spans side / 128 image pixels, i.e. that / f in x/z).
    assert np.abs(rays - exact).max() < 0.05 * crop[2] / 128 / 1149


def test_nearer_primitive_occludes():
    rays = render.crop_rays("54138969", (400, 400, 200), 32)
    axes = np.eye(3)
    far = render.ellipsoid([0, 0, 5000], axes, [300, 300, 300], render.SHIRT)
    near = render.ellipsoid([0, 0, 3000], axes, [100, 100, 100], render.PANTS)
    for order in ([far, near], [near, far]):
        depth, material, _ = render.rasterize(order, rays, "54138969", (400, 400, 200))
        centre = h36m.project([0, 0, 3000], "54138969")
        i, k = (int(v) for v in (centre[::-1] - 400) * 32 / 200)
        assert material[i, k] == render.PANTS and depth[i, k] == pytest.approx(2900, abs=5)


def test_capsule_and_box_intersections_are_exact():
    D = np.array([[[0.0, 0.0, 1.0], [0.05, 0.0, 1.0]]])
    cap = render.capsule([-500, 0, 4000], [500, 0, 4000], 100.0, render.SKIN)
    t, n, _ = render._hit_capsule(D, cap)
    assert t[0, 0] == pytest.approx(3900)                         # the side of the cylinder
    np.testing.assert_allclose(n[0, 0], [0, 0, -1], atol=1e-9)
    b = render.box([0, 0, 4000], np.eye(3), [100, 100, 100], render.CHAIR)
    t, n, _ = render._hit_box(D, b)
    assert t[0, 0] == pytest.approx(3900) and np.isinf(t[0, 1])
    np.testing.assert_allclose(n[0, 0], [0, 0, -1])


def test_background_is_the_room_render_draws_behind_a_person():
    profile = SubjectProfile("S6", 0)
    m = motion.generate_motion("Waiting", profile.skeleton, profile.height, np.random.default_rng(2), 6)
    cam = "55011271"
    R, T = h36m.extrinsics("S6", cam)
    pose = h36m.world_to_camera(m["joints"][50], R, T)
    light = dict(dir=np.array([0.3, 0.2, 0.93]), ambient=0.4, diffuse=0.6, gains=np.array([1.0, 0.95, 1.05]))
    room = render.Room(np.random.default_rng(5), light)
    box = h36m.square_box(h36m.project(pose, cam), 0.2)
    person = render.render(pose, cam, box, R, T, profile.style, room, light, None, size=64).astype(int)
    shadow = render.contact_shadow(pose, R, T, profile.style)
    empty = render.background(cam, box, R, T, room, light, size=64, shadow=shadow).astype(int)
    depth, _, _ = render.rasterize(render.body_primitives(pose, profile.style), render.crop_rays(cam, box, 64),
                                   cam, box)
    hit = np.isfinite(depth)
    assert 0.05 < hit.mean() < 0.6
    np.testing.assert_array_equal(person[~hit], empty[~hit])
    assert np.abs(person[hit] - empty[hit]).mean() > 5
    # The contact shadow darkens the floor around the feet.
    assert empty.sum() < render.background(cam, box, R, T, room, light, size=64).astype(int).sum()

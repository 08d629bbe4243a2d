"""Synthetic scenes: determinism, exact ground truth (checked by independent surface sampling), table plane,
sensor effects, 16UC1 round trip, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from n3d_ros.core.images import decode_depth
from n3d_ros.core.scene import COLORS, load_scene, make_scene, save_scene
from n3d_ros.core.types import InputError


@pytest.fixture(scope="module")
def exact_scene():
    return make_scene(7, noise=False)


@pytest.fixture(scope="module")
def noisy_scene():
    return make_scene(7)


def _surface_samples_table(attrs: dict, n: int = 400) -> np.ndarray:
    """Points on the solid's surface in the table frame, generated from the pose alone (independent of the
    renderer): parametric grids over every face/curved surface."""
    pose = attrs["pose_table"]
    x0, y0 = pose["x"], pose["y"]
    s = np.linspace(0.0, 1.0, n)
    if attrs["shape"] == "sphere":
        r = pose["radius"]
        theta, phi = np.meshgrid(np.linspace(0, np.pi, n), np.linspace(0, 2 * np.pi, n))
        pts = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1) * r
        return pts.reshape(-1, 3) + [x0, y0, r]
    if attrs["shape"] == "cylinder":
        r, h = pose["radius"], pose["height"]
        phi, zz = np.meshgrid(np.linspace(0, 2 * np.pi, 4 * n), s * h)
        return np.stack([x0 + r * np.cos(phi), y0 + r * np.sin(phi), zz], -1).reshape(-1, 3)
    a, b, h = pose["size_x"], pose["size_y"], pose["height"]
    corners = np.array([[i * a / 2, j * b / 2, k * h] for i in (-1, 1) for j in (-1, 1) for k in (0, 1)])
    c, sn = np.cos(pose["yaw"]), np.sin(pose["yaw"])
    return corners @ np.array([[c, sn, 0], [-sn, c, 0], [0, 0, 1]]) + [x0, y0, 0.0]


def test_same_seed_same_scene_and_different_seed_differs():
    a, b, c = make_scene(11), make_scene(11), make_scene(12)
    assert np.array_equal(a.frame.color, b.frame.color)
    assert np.array_equal(a.depth_mm, b.depth_mm)
    assert [o.label for o in a.objects] == [o.label for o in b.objects]
    assert all(np.array_equal(x.center, y.center) for x, y in zip(a.objects, b.objects))
    assert not np.array_equal(a.depth_mm, c.depth_mm)


def test_objects_are_labelled_distinct_ordered_left_to_right(exact_scene):
    scene = exact_scene
    cam = scene.frame.camera
    labels = [o.label for o in scene.objects]
    colours = [o.attributes["color"] for o in scene.objects]
    assert len(set(colours)) == len(colours) and set(colours) <= set(COLORS)
    assert all(lab == f"{o.attributes['color']} {o.attributes['shape']}" for lab, o in zip(labels, scene.objects))
    assert [o.id for o in scene.objects] == list(range(len(scene.objects)))
    u = [cam.fx * o.center[0] / o.center[2] + cam.cx for o in scene.objects]
    assert u == sorted(u)
    assert all(o.yaw == 0.0 for o in scene.objects)
    for o in scene.objects:
        pose = o.attributes["pose_table"]
        extent = 2 * pose["radius"] if "radius" in pose else max(pose["size_x"], pose["size_y"])
        assert 0.04 <= extent <= 0.25 and 0.04 <= (pose.get("height") or 2 * pose["radius"]) <= 0.25
        assert (scene.object_mask == o.id).sum() == o.attributes["visible_px"] > 50


@pytest.mark.parametrize("seed", [0, 3, 7])
def test_ground_truth_box_is_tight_box_of_the_solid(seed):
    scene = make_scene(seed, noise=False)
    T = scene.optical_from_table
    for box in scene.objects:
        surface = _surface_samples_table(box.attributes) @ T[:3, :3].T + T[:3, 3]
        # every surface point is inside, and the extremes reach the faces (sampling resolution ~1 mm)
        assert np.all(surface >= box.min_corner - 1e-9) and np.all(surface <= box.max_corner + 1e-9)
        assert np.allclose(surface.min(axis=0), box.min_corner, atol=1.5e-3)
        assert np.allclose(surface.max(axis=0), box.max_corner, atol=1.5e-3)


def test_rendered_object_pixels_lie_on_the_solid_inside_its_box(exact_scene):
    scene = exact_scene
    cam = scene.frame.camera
    rows, cols = np.indices(scene.depth_exact.shape)
    z = scene.depth_exact.astype(np.float64)
    pts = np.stack([(cols - cam.cx) / cam.fx * z, (rows - cam.cy) / cam.fy * z, z], -1)
    T_inv = np.linalg.inv(scene.optical_from_table)
    for box in scene.objects:
        mine = pts[scene.object_mask == box.id]
        tol = 2e-6 * mine[:, 2].max()  # float32 depth rounding
        assert np.all(mine >= box.min_corner - tol) and np.all(mine <= box.max_corner + tol)
        table = mine @ T_inv[:3, :3].T + T_inv[:3, 3]
        pose = box.attributes["pose_table"]
        if box.attributes["shape"] == "sphere":
            r = np.linalg.norm(table - [pose["x"], pose["y"], pose["radius"]], axis=1)
            assert np.allclose(r, pose["radius"], atol=2e-5)
        elif box.attributes["shape"] == "cylinder":
            radial = np.hypot(table[:, 0] - pose["x"], table[:, 1] - pose["y"])
            on_side = np.isclose(radial, pose["radius"], atol=2e-5)
            on_top = np.isclose(table[:, 2], pose["height"], atol=2e-5) & (radial <= pose["radius"] + 2e-5)
            assert np.all(on_side | on_top)


def test_table_plane_matches_background_pixels(exact_scene):
    scene = exact_scene
    cam = scene.frame.camera
    rows, cols = np.indices(scene.depth_exact.shape)
    z = scene.depth_exact.astype(np.float64)
    pts = np.stack([(cols - cam.cx) / cam.fx * z, (rows - cam.cy) / cam.fy * z, z], -1)
    background = pts[(scene.object_mask < 0) & np.isfinite(z)]
    signed = background @ scene.table_normal + scene.table_offset
    on_table = np.abs(signed) < 1e-4
    assert on_table.mean() > 0.5
    assert np.allclose(signed[~on_table], -0.74, atol=2e-3)  # the rest is the floor below the table
    assert np.isclose(np.linalg.norm(scene.table_normal), 1.0)
    assert scene.table_normal[1] < 0  # "up" points towards optical -y (image up)


def test_noise_free_depth_is_exact_and_16uc1_is_its_rounding(exact_scene):
    scene = exact_scene
    assert np.array_equal(scene.frame.depth, scene.depth_exact, equal_nan=True)
    valid = np.isfinite(scene.depth_exact)
    assert np.array_equal(scene.depth_mm[valid], np.rint(scene.depth_exact[valid].astype(np.float64) * 1000))
    assert np.all(scene.depth_mm[~valid] == 0)


def test_sensor_effects_are_realistic(noisy_scene, exact_scene):
    noisy, exact = noisy_scene.frame.depth, exact_scene.depth_exact
    assert np.array_equal(noisy_scene.frame.color.shape, exact_scene.frame.color.shape)
    holes = np.isnan(noisy) & np.isfinite(exact)
    assert 0.002 < holes.mean() < 0.1
    both = np.isfinite(noisy) & np.isfinite(exact)
    err = np.abs(noisy[both] - exact[both])
    near, far = exact[both] < 1.0, exact[both] > 2.0
    assert 0.0005 < np.median(err[near]) < 0.005
    assert np.median(err[far]) > 2 * np.median(err[near])  # noise grows with z^2
    # the decoded depth is exactly the 16UC1 image / 1000
    decoded = decode_depth(noisy_scene.depth_mm, "16UC1", *noisy_scene.depth_mm.shape[::-1])
    assert np.array_equal(decoded, noisy, equal_nan=True)


def test_scene_size_and_object_count_arguments():
    scene = make_scene(2, width=320, height=240, n_objects=2, noise=False)
    assert scene.frame.color.shape == (240, 320, 3) and len(scene.objects) == 2
    assert scene.frame.camera.fx == pytest.approx(615.0 / 2)
    with pytest.raises(InputError, match="n_objects"):
        make_scene(2, n_objects=9)
    with pytest.raises(InputError, match="n_objects"):
        make_scene(2, n_objects=0)
    for seed in (-3, 1.5, True):
        with pytest.raises(InputError, match="non-negative integer"):
            make_scene(seed)


def test_save_load_round_trip(tmp_path, noisy_scene):
    paths = save_scene(noisy_scene, tmp_path / "s")
    assert sorted(p.name for p in paths) == ["camera_info.json", "color.png", "depth.png", "ground_truth.json"]
    loaded = load_scene(tmp_path / "s")
    assert np.array_equal(loaded.frame.color, noisy_scene.frame.color)
    assert np.array_equal(loaded.depth_mm, noisy_scene.depth_mm)
    assert np.array_equal(loaded.frame.depth, noisy_scene.frame.depth, equal_nan=True)
    assert loaded.frame.camera == noisy_scene.frame.camera
    assert [o.label for o in loaded.objects] == [o.label for o in noisy_scene.objects]
    for a, b in zip(loaded.objects, noisy_scene.objects):
        assert np.array_equal(a.center, b.center) and np.array_equal(a.size, b.size) and a.id == b.id
    assert np.allclose(loaded.table_normal, noisy_scene.table_normal)
    info = json.loads((tmp_path / "s" / "camera_info.json").read_text())
    assert info["k"][0] == noisy_scene.frame.camera.fx and len(info["k"]) == 9


def test_load_scene_names_missing_files(tmp_path):
    with pytest.raises(InputError, match="missing color.png"):
        load_scene(tmp_path)


def test_cli_writes_a_loadable_scene(tmp_path, capsys):
    from n3d_ros.cli import main

    assert main(["scene", "--seed", "4", "--out", str(tmp_path / "a"), "--objects", "3", "--no-noise"]) == 0
    printed = capsys.readouterr().out
    loaded = load_scene(tmp_path / "a")
    assert len(loaded.objects) == 3 and "wrote" in printed and loaded.objects[0].label in printed
    expected = make_scene(4, n_objects=3, noise=False)
    assert np.array_equal(loaded.depth_mm, expected.depth_mm)
    assert main(["scene", "--seed", "4", "--out", str(tmp_path / "b"), "--objects", "12"]) == 2
    assert "n_objects" in capsys.readouterr().err

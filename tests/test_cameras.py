import numpy as np
import pytest
import yaml
from conftest import REPO

from ulip2_pipeline.config import validate_config
from ulip2_pipeline.stages.render.cameras import RIGHT_AXIS, UP_AXIS, framing_distance, orbit_cameras, project


def presets():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    return validate_config(config, REPO / "config.schema.yaml")["render_presets"]


@pytest.mark.parametrize("name,views,step,depth", [("objaverse", 12, 30.0, False), ("shapenet", 30, 12.0, True)])
def test_paper_presets_have_their_view_counts_and_angles(name, views, step, depth):
    preset = presets()[name]
    assert preset["views"] == views
    assert preset["depth"] is depth
    assert preset["resolution"] == 512
    cameras = orbit_cameras(preset["views"], preset["elevation_deg"], preset["fov_deg"], preset["resolution"], "y")
    assert [c.azimuth_deg for c in cameras] == pytest.approx([step * i for i in range(views)])
    assert {c.elevation_deg for c in cameras} == {preset["elevation_deg"]}


@pytest.mark.parametrize("up", ["x", "y", "z"])
def test_the_unit_sphere_fills_the_frame_and_the_centre_projects_to_the_middle(up):
    rng = np.random.default_rng(0)
    sphere = rng.normal(size=(20000, 3))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    for camera in orbit_cameras(8, 30.0, 40.0, 224, up):
        centre, depth = project(np.zeros((1, 3)), camera)
        np.testing.assert_allclose(centre[0], [112.0, 112.0], atol=1e-9)
        assert depth[0] == pytest.approx(framing_distance(40.0))
        pixels, _ = project(sphere, camera)
        assert pixels.min() > -0.5
        assert pixels.max() < 224.5
        assert pixels.min() < 2.0
        assert pixels.max() > 222.0


@pytest.mark.parametrize("up", ["y", "z"])
def test_elevation_lifts_the_camera_along_the_up_axis_and_image_up_is_world_up(up):
    axis = "xyz".index(up)
    camera = orbit_cameras(1, 30.0, 40.0, 100, up)[0]
    assert camera.position[axis] == pytest.approx(framing_distance(40.0) * 0.5)
    top = np.zeros((1, 3))
    top[0, axis] = 0.5
    pixels, _ = project(top, camera)
    assert pixels[0, 1] < 50.0  # a point above the centre appears above the image centre


def test_blender_camera_matrix_is_the_inverse_view_with_flipped_axes():
    camera = orbit_cameras(3, 20.0, 40.0, 64, "y")[1]
    blender = camera.blender_matrix_world()
    np.testing.assert_allclose(blender[:3, 3], camera.position)
    looking = -blender[:3, 2]  # Blender cameras look along local -Z
    np.testing.assert_allclose(looking, -camera.position / np.linalg.norm(camera.position), atol=1e-12)


@pytest.mark.parametrize("up", ["x", "y", "z"])
def test_azimuth_zero_looks_at_the_front_and_azimuths_turn_towards_the_right(up):
    """Front is ``right x up``; seen from above, views go counter-clockwise: front, right, back, left."""
    right, up_vector = RIGHT_AXIS[up], UP_AXIS[up]
    front = np.cross(right, up_vector)
    distance = framing_distance(40.0)
    positions = [c.position for c in orbit_cameras(4, 0.0, 40.0, 100, up)]
    for position, direction in zip(positions, (front, right, -front, -right)):
        np.testing.assert_allclose(position, distance * direction, atol=1e-12)


@pytest.mark.parametrize("up", ["x", "y", "z"])
def test_the_image_is_neither_mirrored_nor_upside_down(up):
    right, up_vector = RIGHT_AXIS[up], UP_AXIS[up]
    front = np.cross(right, up_vector)
    front_view, right_view = orbit_cameras(4, 0.0, 40.0, 100, up)[:2]
    centre = 50.0
    pixels, _ = project(np.stack([0.5 * right, 0.5 * up_vector, -0.5 * right]), front_view)
    assert pixels[0, 0] > centre + 10
    assert pixels[0, 1] == pytest.approx(centre)
    assert pixels[1, 1] < centre - 10
    assert pixels[1, 0] == pytest.approx(centre)
    assert pixels[2, 0] < centre - 10
    pixels, _ = project(np.stack([0.5 * front, -0.5 * front]), right_view)
    assert pixels[0, 0] < centre - 10
    assert pixels[1, 0] > centre + 10


def test_blender_camera_axes_are_opencv_axes_with_y_and_z_flipped():
    for camera in orbit_cameras(5, 25.0, 40.0, 64, "z"):
        blender = camera.blender_matrix_world()
        rotation = camera.world_to_camera[:3, :3]  # rows: the camera's right, down and forward in the world
        np.testing.assert_allclose(blender[:3, 0], rotation[0], atol=1e-12)  # Blender local +X: image right
        np.testing.assert_allclose(blender[:3, 1], -rotation[1], atol=1e-12)  # local +Y: image up
        np.testing.assert_allclose(blender[:3, 2], -rotation[2], atol=1e-12)  # local +Z: backwards
        assert blender[2, 1] > 0  # image up leans towards world up (+z)


@pytest.mark.parametrize("up", ["x", "y", "z"])
@pytest.mark.parametrize("elevation", [90.0, -90.0])
def test_a_camera_straight_above_or_below_is_a_proper_camera_on_the_up_axis(up, elevation):
    """Looking along the up axis, ``right x up`` is zero: the camera still gets a right-handed, unmirrored frame."""
    distance = framing_distance(40.0)
    camera = orbit_cameras(1, elevation, 40.0, 100, up)[0]
    np.testing.assert_allclose(camera.position, np.sign(elevation) * distance * UP_AXIS[up], atol=1e-12)
    rotation = camera.world_to_camera[:3, :3]
    assert np.isfinite(rotation).all()
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    np.testing.assert_allclose(rotation[2], -camera.position / distance, atol=1e-12)  # looks at the centre
    centre, depth = project(np.zeros((1, 3)), camera)
    np.testing.assert_allclose(centre[0], [50.0, 50.0], atol=1e-9)
    assert depth[0] == pytest.approx(distance)


@pytest.mark.parametrize("up", ["x", "y", "z"])
@pytest.mark.parametrize("elevation", [90.0, -90.0])
def test_a_camera_straight_above_or_below_keeps_the_roll_of_its_azimuth(up, elevation):
    """The top (bottom) view is the limit of the views at its azimuth as the elevation nears +-90 degrees,
    so its image turns with the azimuth like theirs."""
    near = elevation - np.sign(elevation) * 1e-6
    for view, pole in enumerate(orbit_cameras(4, elevation, 40.0, 100, up)):
        limit = orbit_cameras(4, near, 40.0, 100, up)[view]
        np.testing.assert_allclose(pole.world_to_camera[:3, :3], limit.world_to_camera[:3, :3], atol=1e-5)
    rolls = {tuple(np.round(c.world_to_camera[0, :3], 6)) for c in orbit_cameras(4, elevation, 40.0, 100, up)}
    assert len(rolls) == 4


def test_cameras_record_their_view_index_distance_field_of_view_and_size():
    cameras = orbit_cameras(3, 10.0, 35.0, 64, "y", distance=3.0)
    assert [c.view for c in cameras] == [0, 1, 2]
    assert {c.distance for c in cameras} == {3.0}
    assert {c.fov_deg for c in cameras} == {35.0}
    assert {(c.width, c.height) for c in cameras} == {(64, 64)}
    for camera in cameras:
        assert np.linalg.norm(camera.position) == pytest.approx(3.0)


def test_intrinsics_put_the_principal_point_in_the_middle_and_fit_the_width_to_the_field_of_view():
    from ulip2_pipeline.stages.render.cameras import intrinsics

    k = intrinsics(90.0, 200, 100)
    np.testing.assert_allclose(k, [[100.0, 0.0, 100.0], [0.0, 100.0, 50.0], [0.0, 0.0, 1.0]], atol=1e-9)


@pytest.mark.parametrize("up,front", [("y", [0.0, 0.0, 1.0]), ("z", [0.0, -1.0, 0.0]), ("x", [0.0, 0.0, -1.0])])
def test_the_front_view_sits_on_each_up_axis_conventional_front(up, front):
    """glTF (y up) faces +z; Blender-style z-up models face -y; with x up, right is +y and front -z."""
    camera = orbit_cameras(4, 0.0, 40.0, 100, up)[0]
    np.testing.assert_allclose(camera.position / camera.distance, front, atol=1e-12)

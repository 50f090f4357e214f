"""Everything that touches ``bpy``: runs only inside the render worker process.

One object at a time: reset to factory-empty, import, check, move into the
normalised frame, light, render every view. Nothing survives from one object
to the next but the Python process and its loaded render kernels.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from ulip2_pipeline.colour import srgb_to_linear
from ulip2_pipeline.failures import ObjectFailure
from ulip2_pipeline.settings import RenderSettings
from ulip2_pipeline.stages.points.face_count import gltf_version_problem
from ulip2_pipeline.stages.render.cameras import UP_AXIS, Camera

# Import arguments that keep an obj/ply/stl file's own axes, so Blender's world is the
# file frame (file_to_blender() gives the rotation for the other importers).
AXIS_KEEPING = {"forward_axis": "Y", "up_axis": "Z"}


def disable_auto_run() -> None:
    """A .blend's embedded Python (registered text blocks, Python drivers) must never run."""
    bpy.context.preferences.filepaths.use_scripts_auto_execute = False


def reset_scene() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    disable_auto_run()


def _append_blend(path: Path) -> None:
    """Append a .blend's objects into the empty scene without executing anything in it."""
    with bpy.data.libraries.load(str(path), link=False) as (data_from, data_to):
        data_to.objects = list(data_from.objects)
    scene = bpy.context.scene
    for obj in data_to.objects:
        if obj is not None and obj.type in {"MESH", "EMPTY", "CURVE", "SURFACE", "META", "FONT"}:
            scene.collection.objects.link(obj)


def _via_trimesh(path: Path) -> None:
    """Formats only trimesh reads (off, 3mf, dae, ...): convert to glb in memory, then import."""
    import trimesh

    scene = trimesh.load_scene(str(path), process=False)
    with tempfile.TemporaryDirectory() as tmp:
        glb = Path(tmp) / "converted.glb"
        glb.write_bytes(scene.export(file_type="glb"))
        bpy.ops.import_scene.gltf(filepath=str(glb))


def import_file(path: Path) -> str:
    """Import ``path`` into the current scene; return the frame kind ('gltf', 'native', 'kept')."""
    ext = path.suffix.lower().lstrip(".")
    unsupported = gltf_version_problem(path)  # glTF 1.0: Blender's importer reads only 2.0
    if unsupported is not None:
        raise ObjectFailure("unsupported_format", unsupported)
    try:
        if ext in ("glb", "gltf"):
            bpy.ops.import_scene.gltf(filepath=str(path))
            return "gltf"
        if ext == "obj":
            bpy.ops.wm.obj_import(filepath=str(path), **AXIS_KEEPING)
            return "kept"
        if ext == "ply":
            bpy.ops.wm.ply_import(filepath=str(path), **AXIS_KEEPING)
            return "kept"
        if ext == "stl":
            bpy.ops.wm.stl_import(filepath=str(path), **AXIS_KEEPING)
            return "kept"
        if ext == "fbx":
            bpy.ops.import_scene.fbx(filepath=str(path))
            return "native"
        if ext in ("usd", "usda", "usdc", "usdz"):
            bpy.ops.wm.usd_import(filepath=str(path))
            return "native"
        if ext == "abc":
            bpy.ops.wm.alembic_import(filepath=str(path), as_background_job=False)
            return "native"
        if ext == "blend":
            _append_blend(path)
            return "native"
        _via_trimesh(path)
        return "gltf"
    except ObjectFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - importers raise RuntimeError, KeyError, ...
        raise ObjectFailure("importer_error", f"{type(exc).__name__}: {str(exc).strip()[-1500:]}") from exc


def file_to_blender(frame: str, up_axis: str) -> np.ndarray:
    """Rotation taking file (trimesh) coordinates to Blender world coordinates after import.

    glTF importers turn y-up into Blender's z-up (x, y, z) -> (x, -z, y); obj/ply/stl
    are imported with their axes kept. Blender-only formats have no trimesh frame:
    their frame is Blender's world turned so the dataset's up axis is Blender's z.
    """
    rot_x90 = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])
    if frame == "gltf":
        return rot_x90
    if frame == "kept":
        return np.eye(3)
    to_z = {"z": np.eye(3), "y": rot_x90, "x": np.array([[0, 0, -1.0], [0, 1.0, 0], [1.0, 0, 0]])}
    return to_z[up_axis]


def mesh_objects() -> list:
    return [o for o in bpy.context.scene.objects if o.type == "MESH"]


def triangle_count(objects) -> int:
    total = 0
    for obj in objects:
        polygons = obj.data.polygons
        loop_totals = np.empty(len(polygons), dtype=np.int32)
        polygons.foreach_get("loop_total", loop_totals)
        total += int((loop_totals - 2).clip(min=0).sum())
    return total


def world_triangles(objects) -> np.ndarray:
    """(T, 3, 3) world-space triangles of the evaluated meshes."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    chunks = []
    for obj in objects:
        evaluated = obj.evaluated_get(depsgraph)
        mesh = evaluated.to_mesh()
        mesh.calc_loop_triangles()
        co = np.empty(len(mesh.vertices) * 3)
        mesh.vertices.foreach_get("co", co)
        tri = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int64)
        mesh.loop_triangles.foreach_get("vertices", tri)
        matrix = np.array(evaluated.matrix_world)
        world = co.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]
        chunks.append(world[tri.reshape(-1, 3)])
        evaluated.to_mesh_clear()
    return np.concatenate(chunks) if chunks else np.zeros((0, 3, 3))


def normalisation_from_geometry(objects, to_blender: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and scale like the points stage (area-weighted centroid, farthest vertex), in the file frame."""
    triangles = world_triangles(objects) @ to_blender  # row vectors: Blender -> file is the transpose
    areas = 0.5 * np.linalg.norm(np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]), axis=1)
    if not np.isfinite(areas).all() or areas.sum() <= 0:
        raise ObjectFailure("no_area", "the imported meshes have no surface area")
    center = (areas[:, None] * triangles.mean(axis=1)).sum(axis=0) / areas.sum()
    scale = float(np.linalg.norm(triangles.reshape(-1, 3) - center, axis=1).max())
    return center, scale


def move_into_normalised_frame(to_blender: np.ndarray, center: np.ndarray, scale: float) -> None:
    """Transform every root object so Blender's world is the normalised frame."""
    normalise = np.eye(4)
    normalise[:3, :3] = to_blender.T / scale
    normalise[:3, 3] = -center / scale
    matrix = Matrix(normalise.tolist())
    # Objects appended from a .blend have a stale matrix_world (identity) until the scene is evaluated.
    bpy.context.view_layer.update()
    for obj in bpy.context.scene.objects:
        if obj.parent is None:
            obj.matrix_world = matrix @ obj.matrix_world


def render_colour_attribute(mesh):
    """The colour attribute Blender renders with (the first one when none is marked), or None."""
    attributes = mesh.color_attributes
    if len(attributes) == 0:
        return None
    index = attributes.render_color_index
    return attributes[index] if 0 <= index < len(attributes) else attributes[0]


def show_colour_attributes() -> int:
    """Give meshes that have a colour attribute but no material one that shows it; return how many.

    Importers (ply, stl, obj) leave vertex colours unused without a material, so the
    views would be grey where the points (texture > vertex colour > material) are coloured.
    """
    shown, done = 0, set()
    for obj in mesh_objects():
        mesh = obj.data
        attributes = mesh.color_attributes
        if mesh.name in done or len(attributes) == 0 or any(slot.material for slot in obj.material_slots):
            continue
        done.add(mesh.name)
        layer = render_colour_attribute(mesh)
        material = bpy.data.materials.new("ulip2_colour_attribute")
        nodes = material.node_tree.nodes
        shader = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
        colour = nodes.new("ShaderNodeVertexColor")
        colour.layer_name = layer.name
        material.node_tree.links.new(colour.outputs["Color"], shader.inputs["Base Color"])
        mesh.materials.clear()
        mesh.materials.append(material)
        shown += 1
    return shown


def paint_uncoloured(default_rgb) -> int:
    """Give meshes with no material and no colour attribute the points' default colour; return how many.

    Blender would show them in its own near-white default, while their points carry
    ``points.default_rgb`` (0.4 grey, as in ULIP). ``default_rgb`` is sRGB; Blender's
    base colour is linear.
    """
    material, painted = None, 0
    for obj in mesh_objects():
        if len(obj.data.color_attributes) or any(slot.material for slot in obj.material_slots):
            continue
        if material is None:
            material = bpy.data.materials.new("ulip2_default_colour")
            shader = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
            shader.inputs["Base Color"].default_value = (*(srgb_to_linear(c) for c in default_rgb), 1.0)
        obj.data.materials.clear()
        obj.data.materials.append(material)
        painted += 1
    return painted


def replace_missing_textures(fallback_rgb) -> int:
    """Point image nodes whose file is missing at a 1x1 fallback colour; return how many were missing."""
    fallback = None
    missing = 0
    for material in bpy.data.materials:
        if not material.node_tree:
            continue
        for node in material.node_tree.nodes:
            if node.type != "TEX_IMAGE" or node.image is None:
                continue
            image = node.image
            if (
                image.packed_file is None
                and image.source == "FILE"
                and not os.path.exists(bpy.path.abspath(image.filepath))
            ):
                if fallback is None:
                    fallback = bpy.data.images.new("ulip2_missing_texture", 1, 1)
                    fallback.pixels = [*fallback_rgb, 1.0]
                node.image = fallback
                missing += 1
    return missing


def add_light_rig(up_axis: str, ambient: float, key: float, fill: float) -> None:
    """Uniform ambient world light plus a key and a fill sun, fixed in the normalised frame."""
    world = bpy.data.worlds.new("ulip2_world")
    world.use_nodes = True
    background = world.node_tree.nodes.get("Background")
    background.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    background.inputs["Strength"].default_value = ambient
    bpy.context.scene.world = world
    up = UP_AXIS[up_axis]
    for name, energy, azimuth, elevation in (("key", key, 45.0, 55.0), ("fill", fill, -120.0, 25.0)):
        light = bpy.data.lights.new(f"ulip2_{name}", type="SUN")
        light.energy = energy
        obj = bpy.data.objects.new(f"ulip2_{name}", light)
        bpy.context.scene.collection.objects.link(obj)
        direction = _direction(up, azimuth, elevation)
        obj.matrix_world = Matrix(_sun_matrix(direction).tolist())


def _direction(up: np.ndarray, azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    right = np.roll(up, -1)
    front = np.cross(right, up)
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return math.cos(el) * (math.cos(az) * front + math.sin(az) * right) + math.sin(el) * up


def _sun_matrix(towards_light: np.ndarray) -> np.ndarray:
    """A sun lamp shines along its local -Z; orient it to shine from ``towards_light`` to the origin."""
    z = towards_light / np.linalg.norm(towards_light)
    x = np.cross([0.0, 0.0, 1.0], z) if abs(z[2]) < 0.99 else np.array([1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    matrix = np.eye(4)
    matrix[:3, :3] = np.stack([x, y, z], axis=1)
    matrix[:3, 3] = 10.0 * z
    return matrix


def configure_render(settings: RenderSettings, threads: int) -> None:
    scene = bpy.context.scene
    render = scene.render
    engine = settings.engine
    render.engine = {"cycles": "CYCLES", "eevee": "BLENDER_EEVEE", "workbench": "BLENDER_WORKBENCH"}[engine]
    if engine == "cycles":
        cycles = scene.cycles
        cycles.samples = settings.samples
        cycles.seed = settings.seed
        cycles.use_denoising = False
        cycles.use_adaptive_sampling = False
        cycles.max_bounces = 4
        cycles.device = "GPU" if settings.device == "gpu" else "CPU"
        if settings.device == "gpu":
            _enable_gpu()
    render.resolution_x = render.resolution_y = settings.resolution
    render.resolution_percentage = 100
    render.film_transparent = True
    render.threads_mode = "FIXED"
    render.threads = max(1, threads)
    render.use_compositing = False
    render.use_sequencer = False
    scene.view_settings.view_transform = settings.view_transform
    scene.view_settings.look = "None"
    scene.view_settings.exposure = settings.exposure
    scene.view_settings.gamma = 1.0


def _enable_gpu() -> None:
    """Use the first GPU backend Cycles finds (OptiX, CUDA, HIP, oneAPI, Metal)."""
    prefs = bpy.context.preferences.addons["cycles"].preferences
    for backend in ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL"):
        try:
            prefs.compute_device_type = backend
        except TypeError:
            continue
        devices = prefs.get_devices_for_type(backend)
        gpus = [d for d in devices if d.type != "CPU"]
        if gpus:
            for device in devices:
                device.use = device.type != "CPU"
            return
    raise ObjectFailure("no_gpu", "render device 'gpu' asked for, but Cycles found no GPU")


def add_camera(camera: Camera):
    data = bpy.data.cameras.new("ulip2_camera")
    data.sensor_fit = "HORIZONTAL"
    data.angle = math.radians(camera.fov_deg)
    data.clip_start = max(1e-3, camera.distance - 1.5)
    data.clip_end = camera.distance + 1.5
    obj = bpy.data.objects.new("ulip2_camera", data)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.scene.camera = obj
    return obj


def render_png(path: Path) -> None:
    settings = bpy.context.scene.render.image_settings
    settings.media_type = "IMAGE"
    settings.file_format = "PNG"
    settings.color_mode = "RGBA"
    settings.color_depth = "8"
    settings.compression = 15
    bpy.context.scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)


def _depth_material():
    """Emits each surface point's camera-axis depth; used as a view-layer material override."""
    material = bpy.data.materials.new("ulip2_depth")
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    camera_data = nodes.new("ShaderNodeCameraData")
    emission = nodes.new("ShaderNodeEmission")
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(camera_data.outputs["View Z Depth"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    return material


def render_depth(path: Path) -> None:
    """One-sample render of depth into a float EXR (multilayer passes are not written by this bpy build)."""
    scene = bpy.context.scene
    layer = bpy.context.view_layer
    saved = (scene.cycles.samples, scene.cycles.filter_width, scene.world, layer.material_override)
    scene.cycles.samples = 1
    scene.cycles.filter_width = 0.01
    scene.world = None
    layer.material_override = _depth_material()
    settings = scene.render.image_settings
    settings.media_type = "IMAGE"
    settings.file_format = "OPEN_EXR"
    settings.color_mode = "RGBA"
    settings.color_depth = "32"
    scene.render.filepath = str(path)
    try:
        bpy.ops.render.render(write_still=True)
    finally:
        scene.cycles.samples, scene.cycles.filter_width, scene.world, layer.material_override = saved

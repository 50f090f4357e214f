"""The scene Blender imported, as the points stage's triangle parts (runs where bpy is loaded).

The second reader of the points stage, for files trimesh cannot read or reads
wrongly (.blend, fbx, usd, abc, Draco glTF). The file goes through the render
worker's own import (``blender_scene.import_file``), and the triangles are taken
back from Blender's world into the file frame the render stage uses
(``file_to_blender``), so points and views share one frame.

Colours follow the trimesh reader's rules, per object and material slot: the
texture the material's base colour reads, at each corner's UV (times a multiplying
colour such as glTF's baseColorFactor); else the mesh's colour attribute (per vertex
or per corner), else a face-domain colour attribute, else the material's base
colour; else none (the default grey). Colours are Blender's display values (sRGB),
the colours its renders show: texture bytes as stored, colour attributes as
``color_srgb``, material colours converted from Blender's linear values.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ulip2_pipeline.colour import image_buffer_to_srgb_bytes, linear_to_srgb
from ulip2_pipeline.failures import ObjectFailure
from ulip2_pipeline.stages.points.meshes import FACE, MATERIAL, NONE, TEXTURE, VERTEX, Part, check_parts
from ulip2_pipeline.stages.render import blender_scene

MAX_TRACE_DEPTH = 12


def read_parts(path: Path, up_axis: str, max_faces: int) -> list[Part]:
    """Import ``path`` into an empty scene; its mesh triangles in the file frame, with colours."""
    blender_scene.reset_scene()
    try:
        frame = blender_scene.import_file(path)
    except ObjectFailure as failure:
        raise ObjectFailure("unreadable", f"Blender could not import it: {failure.detail}") from failure
    objects = blender_scene.mesh_objects()
    triangles = blender_scene.triangle_count(objects)
    if triangles > max_faces:
        raise ObjectFailure("too_many_faces", f"{triangles} triangles, over the limit of {max_faces}")
    to_file = blender_scene.file_to_blender(frame, up_axis)  # row vectors: world @ R is the file frame
    depsgraph = bpy.context.evaluated_depsgraph_get()
    images: dict[str, np.ndarray | None][str, np.ndarray | None] = {}
    parts = []
    for obj in objects:
        evaluated = obj.evaluated_get(depsgraph)
        mesh = evaluated.to_mesh()
        try:
            parts += _object_parts(evaluated, mesh, to_file, images)
        finally:
            evaluated.to_mesh_clear()
    if not parts:
        raise ObjectFailure("empty", "Blender imported no mesh with faces")
    return check_parts(parts, max_faces)


def _foreach(collection, attribute: str, count: int, width: int, dtype) -> np.ndarray:
    values = np.empty(count * width, dtype=dtype)
    collection.foreach_get(attribute, values)
    return values.reshape(count, width) if width > 1 else values


def _object_parts(obj, mesh, to_file: np.ndarray, images: dict[str, np.ndarray | None]) -> list[Part]:
    mesh.calc_loop_triangles()
    count = len(mesh.loop_triangles)
    if count == 0:
        return []
    matrix = np.array(obj.matrix_world)
    co = _foreach(mesh.vertices, "co", len(mesh.vertices), 3, np.float64)
    vertices = (co @ matrix[:3, :3].T + matrix[:3, 3]) @ to_file
    tri_vertices = _foreach(mesh.loop_triangles, "vertices", count, 3, np.int64)
    tri_loops = _foreach(mesh.loop_triangles, "loops", count, 3, np.int64)
    tri_polygons = _foreach(mesh.loop_triangles, "polygon_index", count, 1, np.int64)
    tri_materials = _foreach(mesh.loop_triangles, "material_index", count, 1, np.int64)
    slots = obj.material_slots
    parts = []
    for index in np.unique(tri_materials):
        mine = tri_materials == index
        material = slots[int(index)].material if 0 <= index < len(slots) else None
        parts.append(_part(mesh, material, vertices, tri_vertices[mine], tri_loops[mine], tri_polygons[mine], images))
    return parts


def _part(mesh, material, vertices, tri_vertices, tri_loops, tri_polygons, images) -> Part:
    source = material_colour_source(material)
    if source[0] == TEXTURE:
        image = _image_pixels(source[1], images)
        uv = _uv_layer(mesh, source[2])
        if image is not None and uv is not None:
            return Part(
                vertices=vertices[tri_vertices].reshape(-1, 3),
                faces=_unwelded(len(tri_vertices)),
                colour_source=TEXTURE,
                uv=uv[tri_loops].reshape(-1, 2),
                image=image,
                factor=source[3],
            )
    attribute = _colour_attribute(mesh, source[1] if source[0] == VERTEX else None)
    if attribute is not None:
        colours = _attribute_colours(attribute)
        if attribute.domain == "POINT":
            return Part(vertices=vertices, faces=tri_vertices, colour_source=VERTEX, colours=colours)
        return Part(
            vertices=vertices[tri_vertices].reshape(-1, 3),
            faces=_unwelded(len(tri_vertices)),
            colour_source=VERTEX,
            colours=colours[tri_loops].reshape(-1, 4),
        )
    face_attribute = _face_colour_attribute(mesh)
    if face_attribute is not None:
        return Part(
            vertices=vertices,
            faces=tri_vertices,
            colour_source=FACE,
            colours=_attribute_colours(face_attribute)[tri_polygons],
        )
    if source[0] == MATERIAL and source[1] is not None:
        return Part(vertices=vertices, faces=tri_vertices, colour_source=MATERIAL, colours=linear_to_srgb(source[1]))
    return Part(vertices=vertices, faces=tri_vertices, colour_source=NONE)


def _unwelded(triangles: int) -> np.ndarray:
    return np.arange(3 * triangles, dtype=np.int64).reshape(-1, 3)


# --- what a material's base colour reads ---


def material_colour_source(material) -> tuple:
    """(TEXTURE, image, uv map name or None, factor) | (VERTEX, attribute name or None) |
    (MATERIAL, linear RGBA or None) for the colour the material's surface shader is given."""
    if material is None:
        return (MATERIAL, None)
    tree = material.node_tree
    if tree is None:
        return (MATERIAL, np.array(material.diffuse_color, dtype=np.float64))
    socket = _base_colour_socket(tree)
    found = _trace(socket, np.ones(4), 0) if socket is not None else None
    if found is not None and found[0] != MATERIAL:
        return found
    # Textures behind node groups or unusual shaders: any image the material holds beats a flat colour.
    for node in tree.nodes:
        if node.type == "TEX_IMAGE" and node.image is not None:
            return (TEXTURE, node.image, _uv_map_name(node), np.ones(4))
    if found is not None:
        return found
    return (MATERIAL, np.array(material.diffuse_color, dtype=np.float64))


def _base_colour_socket(tree):
    outputs = [n for n in tree.nodes if n.type == "OUTPUT_MATERIAL"]
    active = [n for n in outputs if n.is_active_output] or outputs
    if not active or not active[0].inputs["Surface"].is_linked:
        return None
    return _shader_colour(active[0].inputs["Surface"].links[0].from_node, 0)


def _shader_colour(node, depth: int):
    if depth > MAX_TRACE_DEPTH:
        return None
    names = {
        "BSDF_PRINCIPLED": "Base Color",
        "BSDF_DIFFUSE": "Color",
        "EMISSION": "Color",
        "BSDF_GLOSSY": "Color",
        "SUBSURFACE_SCATTERING": "Color",
    }
    if node.type in names:
        return node.inputs[names[node.type]]
    if node.type in ("MIX_SHADER", "ADD_SHADER"):
        for socket in node.inputs:
            if socket.type == "SHADER" and socket.is_linked:
                found = _shader_colour(socket.links[0].from_node, depth + 1)
                if found is not None:
                    return found
    return None


def _trace(socket, factor: np.ndarray, depth: int):
    """Follow a colour socket upstream to a texture, a colour attribute or a flat colour."""
    if depth > MAX_TRACE_DEPTH:
        return None
    if not socket.is_linked:
        value = getattr(socket, "default_value", None)
        if value is None or not hasattr(value, "__len__") or len(value) < 3:
            return None
        return (MATERIAL, np.array([*value[:3], value[3] if len(value) > 3 else 1.0]) * factor)
    node = socket.links[0].from_node
    if node.type == "TEX_IMAGE":
        return (TEXTURE, node.image, _uv_map_name(node), factor) if node.image is not None else None
    if node.type == "VERTEX_COLOR":
        return (VERTEX, node.layer_name or None)
    if node.type == "ATTRIBUTE":
        return (VERTEX, node.attribute_name or None)
    if node.type == "RGB":
        return (MATERIAL, np.array(node.outputs[0].default_value, dtype=np.float64) * factor)
    colours = [s for s in node.inputs if s.type == "RGBA" and s.enabled]
    if node.type in ("MIX", "MIX_RGB") and getattr(node, "blend_type", "") == "MULTIPLY" and len(colours) == 2:
        linked = [s for s in colours if s.is_linked]
        if len(linked) == 1:  # texture x constant colour: glTF's baseColorFactor, FBX's diffuse factor
            constant = next(s for s in colours if not s.is_linked).default_value
            return _trace(linked[0], factor * np.array(constant, dtype=np.float64), depth + 1)
    for candidate in [s for s in colours if s.is_linked] or colours:
        found = _trace(candidate, factor, depth + 1)
        if found is not None:
            return found
    return None


def _uv_map_name(image_node) -> str | None:
    """The UV map an image node reads (through mapping nodes), or None for the mesh's active one."""
    socket, depth = image_node.inputs.get("Vector"), 0
    while socket is not None and socket.is_linked and depth < MAX_TRACE_DEPTH:
        node = socket.links[0].from_node
        if node.type == "UVMAP":
            return node.uv_map or None
        socket, depth = node.inputs.get("Vector"), depth + 1
    return None


# --- mesh data ---


def _uv_layer(mesh, name: str | None) -> np.ndarray | None:
    layers = mesh.uv_layers
    layer = layers.get(name) if name else None
    if layer is None:
        layer = next((uv for uv in layers if uv.active_render), None) or layers.active
    if layer is None:
        return None
    return _foreach(layer.uv, "vector", len(mesh.loops), 2, np.float64)


def _image_pixels(image, cache: dict[str, np.ndarray | None]) -> np.ndarray | None:
    """(H, W, 4) uint8 sRGB, top row first (Blender stores the bottom row first); None when unreadable."""
    if image.name in cache:
        return cache[image.name]
    pixels = None
    width, height = image.size
    if width > 0 and height > 0:
        values = np.empty(width * height * image.channels, dtype=np.float32)
        image.pixels.foreach_get(values)
        pixels = image_buffer_to_srgb_bytes(values, width, height, image.channels, image.is_float)
    cache[image.name] = pixels
    return pixels


def _colour_attribute(mesh, name: str | None):
    if name and name in mesh.color_attributes:
        return mesh.color_attributes[name]
    return blender_scene.render_colour_attribute(mesh)


def _face_colour_attribute(mesh):
    for attribute in mesh.attributes:
        if attribute.domain == "FACE" and attribute.data_type in ("FLOAT_COLOR", "BYTE_COLOR"):
            return attribute
    return None


def _attribute_colours(attribute) -> np.ndarray:
    """(N, 4) uint8 display colours of a colour attribute."""
    values = _foreach(attribute.data, "color_srgb", len(attribute.data), 4, np.float32)
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)

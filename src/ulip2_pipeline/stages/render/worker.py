"""The render worker: a child process that imports bpy once and renders objects on request.

Started by the supervisor as ``python -m ulip2_pipeline.stages.render.worker FD``; FD is its
end of a socket pair carrying pickled messages (``ulip2_pipeline.supervisor``). Blender's
own output (fd 1 and 2) goes to one log file per object, so a failure can be explained
from its log. The file's content is checked against the manifest here, under the
object's time limit (a stalled file system must not hang the shard).
"""

from __future__ import annotations

import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ulip2_pipeline.failures import ObjectFailure
from ulip2_pipeline.quality.views import ViewQuality, view_quality
from ulip2_pipeline.records import Message
from ulip2_pipeline.settings import RenderSettings
from ulip2_pipeline.source_check import check_source
from ulip2_pipeline.stages.render.cameras import orbit_cameras
from ulip2_pipeline.supervisor import main


def _compose_png(path: Path, background: str) -> tuple[bytes, ViewQuality]:
    """Blender writes RGBA; a white background is composited here so lighting never depends on it.

    The view's quality is measured on the RGBA (the alpha is the object's silhouette) against
    white, the background a transparent PNG is most often shown on.
    """
    image = Image.open(path)
    image.load()
    image = image.convert("RGBA")
    quality = view_quality(np.asarray(image))
    if background == "white":
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=6)
    return out.getvalue(), quality


def _read_depth(path: Path) -> bytes:
    """Depth (float32, row-major from the top row) from the EXR; 0 where nothing was hit."""
    import bpy

    image = bpy.data.images.load(str(path))
    width, height = image.size
    pixels = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    rgba = pixels.reshape(height, width, 4)[::-1]  # Blender stores the bottom row first
    depth = np.where(rgba[..., 3] > 0.5, rgba[..., 0], 0.0).astype("<f4")
    return depth.tobytes()


def render_object(task: Message, settings: RenderSettings, threads: int) -> dict:
    from ulip2_pipeline.stages.render import blender_scene as scene

    started = time.perf_counter()
    scene.reset_scene()
    frame = scene.import_file(Path(task["path"]))
    imported = time.perf_counter()
    objects = scene.mesh_objects()
    triangles = scene.triangle_count(objects)
    if triangles == 0:
        raise ObjectFailure("empty", "the file imported no mesh with faces")
    if triangles > settings.max_faces:
        raise ObjectFailure("too_many_faces", f"{triangles} triangles, over the limit of {settings.max_faces}")
    missing_textures = scene.replace_missing_textures(settings.missing_texture_rgb)
    scene.show_colour_attributes()
    scene.paint_uncoloured(task.get("default_rgb", (0.4, 0.4, 0.4)))
    to_blender = scene.file_to_blender(frame, task["up_axis"])
    if task.get("center") is not None:
        center, scale, source = np.asarray(task["center"]), float(task["scale"]), "points"
    else:
        center, scale = scene.normalisation_from_geometry(objects, to_blender)
        source = "render"
    scene.move_into_normalised_frame(to_blender, center, scale)
    scene.add_light_rig(task["up_axis"], settings.ambient, settings.key_light, settings.fill_light)
    scene.configure_render(settings, threads)
    cameras = orbit_cameras(
        settings.views,
        settings.elevation_deg,
        settings.fov_deg,
        settings.resolution,
        task["up_axis"],
        settings.distance,
    )
    camera_object = scene.add_camera(cameras[0])
    prepared = time.perf_counter()
    views = []
    with tempfile.TemporaryDirectory() as tmp:
        for camera in cameras:
            from mathutils import Matrix

            camera_object.matrix_world = Matrix(camera.blender_matrix_world().tolist())
            png_path = Path(tmp) / f"{camera.view:03d}.png"
            scene.render_png(png_path)
            depth = None
            if settings.depth:
                exr_path = Path(tmp) / f"{camera.view:03d}.exr"
                scene.render_depth(exr_path)
                depth = _read_depth(exr_path)
            png, quality = _compose_png(png_path, settings.background)
            views.append({"png": png, "depth": depth, "quality": quality})
    finished = time.perf_counter()
    return {
        "views": views,
        "missing_textures": missing_textures,
        "center": center.tolist(),
        "scale": scale,
        "normalisation_source": source,
        "triangles": triangles,
        "import_s": imported - started,
        "setup_s": prepared - imported,
        "render_s": finished - prepared,
    }


def setup(hello: Message):
    """Load Blender once (the start-up cost paid once per worker); then render objects on request."""
    import bpy  # noqa: F401

    settings, threads = hello["settings"], hello["threads"]

    def handle(task: Message) -> dict:
        check_source(task["path"], task.get("sha256"))
        return render_object(task, settings, threads)

    return handle


if __name__ == "__main__":
    main(setup)

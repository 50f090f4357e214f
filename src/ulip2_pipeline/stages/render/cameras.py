"""Cameras of a view protocol, in the object's normalised frame (pure NumPy, no Blender).

Conventions, recorded with every view:
- The normalised frame is the points stage's: ``(file coordinates - center) / scale``,
  axes as in the file, the object inside the unit sphere.
- Cameras orbit the origin about the dataset's up axis: azimuth 0 looks at the
  object's front (the axis ``right x up``), azimuths increase counter-clockwise seen
  from above, elevation is measured up from the horizontal plane.
- ``world_to_camera`` is OpenCV-style (x right, y down, z forward) and ``intrinsics``
  is the pixel matrix K, so ``K @ (R @ p + t)`` divided by its z gives the pixel
  (column, row) of a point ``p``, with (0, 0) the top-left corner of the top-left pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RIGHT_AXIS = {"y": np.array([1.0, 0.0, 0.0]), "z": np.array([1.0, 0.0, 0.0]), "x": np.array([0.0, 1.0, 0.0])}
UP_AXIS = {"x": np.array([1.0, 0.0, 0.0]), "y": np.array([0.0, 1.0, 0.0]), "z": np.array([0.0, 0.0, 1.0])}


@dataclass(frozen=True)
class Camera:
    view: int
    azimuth_deg: float
    elevation_deg: float
    distance: float
    fov_deg: float
    width: int
    height: int
    intrinsics: np.ndarray  # (3, 3)
    world_to_camera: np.ndarray  # (4, 4) OpenCV convention
    position: np.ndarray  # (3,) camera centre in the normalised frame

    def blender_matrix_world(self) -> np.ndarray:
        """Camera-to-world for Blender, whose cameras look along local -Z with +Y up."""
        cam_to_world = np.linalg.inv(self.world_to_camera)
        flip = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV (y down, z forward) -> Blender (y up, z back)
        return cam_to_world @ flip


def framing_distance(fov_deg: float) -> float:
    """Distance at which the unit sphere just fills the field of view."""
    return 1.0 / math.sin(math.radians(fov_deg) / 2.0)


def look_at(position: np.ndarray, up: np.ndarray, horizontal: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera matrix of a camera at ``position`` looking at the origin.

    ``horizontal``: the camera's azimuth direction. Straight above or below the object the
    frame is the limit of the frames at that azimuth as the elevation nears +-90 degrees, so
    a top view keeps its azimuth's roll instead of an arbitrary one."""
    forward = -position / np.linalg.norm(position)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:  # looking straight along the up axis
        right = np.cross(up, horizontal)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = -rotation @ position
    return matrix


def intrinsics(fov_deg: float, width: int, height: int) -> np.ndarray:
    """Pinhole K for a horizontal field of view ``fov_deg`` and square pixels."""
    focal = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def orbit_cameras(
    views: int, elevation_deg: float, fov_deg: float, resolution: int, up_axis: str, distance: float | None = None
) -> list[Camera]:
    """``views`` cameras at azimuths evenly dividing 360 degrees, all at one elevation."""
    up, right = UP_AXIS[up_axis], RIGHT_AXIS[up_axis]
    front = np.cross(right, up)
    distance = distance or framing_distance(fov_deg)
    elevation = math.radians(elevation_deg)
    k = intrinsics(fov_deg, resolution, resolution)
    cameras = []
    for view in range(views):
        azimuth_deg = 360.0 * view / views
        azimuth = math.radians(azimuth_deg)
        horizontal = math.cos(azimuth) * front + math.sin(azimuth) * right
        position = distance * (math.cos(elevation) * horizontal + math.sin(elevation) * up)
        cameras.append(
            Camera(
                view=view,
                azimuth_deg=azimuth_deg,
                elevation_deg=elevation_deg,
                distance=distance,
                fov_deg=fov_deg,
                width=resolution,
                height=resolution,
                intrinsics=k,
                world_to_camera=look_at(position, up, horizontal),
                position=position,
            )
        )
    return cameras


def project(points: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (column, row) and camera depth of ``points`` (N, 3) in the normalised frame."""
    cam = points @ camera.world_to_camera[:3, :3].T + camera.world_to_camera[:3, 3]
    pixels = cam @ camera.intrinsics.T
    return pixels[:, :2] / pixels[:, 2:3], cam[:, 2]

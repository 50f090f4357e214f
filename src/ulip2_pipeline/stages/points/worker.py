"""The points worker: a child process that reads and samples one object per request.

Started by the points stage (``stage.points_worker``) as ``python -m
ulip2_pipeline.stages.points.worker FD``; see ``ulip2_pipeline.supervisor`` for the protocol.
Blender (bpy) is loaded only when an object needs the Blender reader.
"""

from __future__ import annotations

from ulip2_pipeline.records import Message
from ulip2_pipeline.stages.points.stage import points_for_object
from ulip2_pipeline.supervisor import main


def setup(hello: Message):
    points, seed, up_axis = hello["points"], hello["seed"], hello["up_axis"]

    def handle(task: Message):
        return points_for_object(task["path"], task["uid"], task["sha256"], points, seed, up_axis)

    return handle


if __name__ == "__main__":
    main(setup)

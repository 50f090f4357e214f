"""The render stage: headless Blender (the bpy module) in a supervised worker process.

``cameras`` is pure NumPy; ``blender_scene`` and ``worker`` run only in the worker
process, which is the only place bpy is imported.
"""

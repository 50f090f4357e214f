"""The points stage: read each mesh (trimesh, or Blender for .blend), sample its surface, keep
farthest-point orders, in a supervised worker process."""

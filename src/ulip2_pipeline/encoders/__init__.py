"""3D encoders whose layers and parameter names are the published ones, so released checkpoints load.

- ``pointbert``: ULIP-2's Point-BERT (``ULIP2_PointBERT_Colored``), layer for layer.
- ``ppat``: OpenShape's "PointBERT" (``ppat.py``'s PointPatchTransformer with its projection).
- ``registry``: the named sizes a run trains (``train.model``) and the config each checkpoint records.
- ``checkpoints``: strict loading of our checkpoints, ULIP's and OpenShape's, whatever wraps them.
- ``cli``: ``ulip2-encode``.

Every encoder is called as ``encoder(xyz, rgb)`` with xyz (B, N, 3) y-up and normalised to the unit
sphere, rgb (B, N, 3) in [0, 1], and returns the projected features (B, D).
"""

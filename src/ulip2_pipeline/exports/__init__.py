"""Exports of the triplets to layouts other people's training code already reads, and the dataset card.

- ``ulip``: ULIP-2's Objaverse triplet layout ({uid}/{uid}_8192.npz, views, captions.json).
- ``shapenet_ulip``: ULIP's ShapeNet-55 layout (points, 30 RGB and depth views per object).
- ``openshape``: OpenShape's training layout (a .npy dict per object with CLIP features, a split JSON);
  ``text_features`` encodes the texts it needs with the embed stage's frozen CLIP.
- ``card``: the Hugging Face dataset card of a dataset's results folder.
"""

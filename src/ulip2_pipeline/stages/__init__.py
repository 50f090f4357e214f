"""The pipeline's stages in order: manifest, points, render, caption, rank, triplets, embed, text features.

Each stage reads its inputs, runs one shard and writes its outputs atomically; the rules in
``rules/`` wire them together.
"""

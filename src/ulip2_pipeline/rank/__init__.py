"""Rank stage: CLIP scores each view's captions against the view and keeps the best."""

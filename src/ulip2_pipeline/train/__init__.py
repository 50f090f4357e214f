"""Training a 3D encoder against frozen CLIP features, and zero-shot evaluation."""

"""Loading the real models (BLIP-2, CLIP) by hub id or path, and building their tiny stand-ins
from the real configurations with only sizes shrunk (demo and tests)."""

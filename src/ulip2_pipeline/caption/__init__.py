"""Caption stage: BLIP-2 writes several captions per rendered view."""

"""The chat service's adapters: the real storage behind its ports."""

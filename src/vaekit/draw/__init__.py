"""Pictures of a model: the figures (matplotlib), the latent geometry they use, and the set a run
gets."""

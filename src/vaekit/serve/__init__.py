"""``vaekit serve RUN``: a latent-space explorer for a trained run, in the browser."""

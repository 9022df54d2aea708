"""Measuring a trained model: likelihood bounds, sample quality, disentanglement."""

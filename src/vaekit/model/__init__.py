"""The model's mathematics, independent of any engine: the loss terms, the priors as densities, the
parameters' names and shapes, and your own networks."""

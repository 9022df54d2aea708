"""Training: the one loop, the run writer, experiment tracking, and starting or resuming a run."""

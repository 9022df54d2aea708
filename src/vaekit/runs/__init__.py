"""The run directory: its files, written atomically, the commit record and recovery, the best
weights, metrics, the writer lock, and a run's own data."""

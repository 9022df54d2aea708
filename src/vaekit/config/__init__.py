"""The model and training settings: dataclasses whose fields carry their help, default and bounds,
settings files and presets."""

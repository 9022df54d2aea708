"""The Python API: the scikit-learn estimator, the from-scratch VAE of the NumPy tutorial and the
ONNX export."""

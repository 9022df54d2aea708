"""The Python API: the scikit-learn estimator, the from-scratch learner and the ONNX export."""

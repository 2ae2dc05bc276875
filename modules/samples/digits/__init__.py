"""The digits sample: a small CNN on scikit-learn's 8x8 digits, as float32 and int8 ONNX (see train.py)."""

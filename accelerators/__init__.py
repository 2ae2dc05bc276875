"""Inference backends (onnxruntime CPU, OpenCL int8, FPGA), device discovery and backend selection."""

"""The FPGA board simulator: real-part board figures, a dataflow compiler with resource and cycle
models, a functionally exact simulated board with fault injection, and the driver plugin that lets
``edgefleet.accelerators.fpga`` use it. See README.md in this directory for the formulas and their limits.
"""

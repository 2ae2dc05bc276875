"""Simulators that stand in for hardware and fleets: the FPGA board simulator (``edgefleet.simulators.fpga``).

Simulators may use ``accelerators``, ``agent`` and ``protocol``; nothing in those packages imports
simulators. A simulated FPGA board reaches the accelerators package only through the
``edgefleet.fpga_drivers`` entry point (see ``simulators/fpga/driver.py``).
"""

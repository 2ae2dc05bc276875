"""Benchmarks: print figures and write JSON under bench/results; never part of the test run."""

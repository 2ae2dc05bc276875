"""edgefleet's stand-in for the parts of the Azure ML SDK an entry script uses at inference time."""

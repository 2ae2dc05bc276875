"""Sample models and entry scripts that ship with edgefleet."""

"""claim → evaluate → store → announce → deliver, and the relay that re-sends lost work."""

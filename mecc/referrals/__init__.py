"""Closed-loop referrals: a `referred` outcome naming a service is followed to its close, with
the person's own view of what changed (the six personal outcomes)."""

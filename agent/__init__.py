"""maintenance-agent: take a fleet into planned maintenance and back by flipping one Consul key."""

__version__ = "0.1.0"

"""A local fleet on loopback (real Consul, HAProxy, supervisord, agents): the demo and the end-to-end tests."""

"""Real service processes on loopback: Consul agents, HAProxy, supervisord, agent processes.

The demo fleet is built from these, and so are the tests' fixtures and the
benchmarks: one harness, owned by the demo, imported by the tests (never the
other way round). Every process is started and stopped by its own PID.
"""

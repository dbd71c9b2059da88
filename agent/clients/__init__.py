"""Gateways that speak to the outside: Consul, HAProxy's runtime API, Alertmanager, HTTP checks, files.

Each turns a protocol's failures into the core's typed errors and puts a
timeout on every call; ``blocking`` holds Consul's blocking-query rules: its loop runs the key watches and
``maintctl``'s follow, and the gates' two watches use its ``next_index``. Clients know nothing of the daemon,
``maintctl`` or partners: they only talk and report what they saw.
"""

"""Gateways that speak to the outside: Consul, HAProxy's runtime API, Alertmanager, HTTP checks, files.

Each turns a protocol's failures into the core's typed errors and puts a
timeout on every call; ``blocking`` holds Consul's blocking-query rules: its loop runs every watch (the
intent, the reporter's own key, a gate's membership and followed box) and ``maintctl``'s follow, and tells a
watch's failures once. ``http_check`` is the one HTTP check of the edge's verification and the web smoke
test. Clients know nothing of the daemon, ``maintctl`` or partners: they only talk and report what they saw.
"""

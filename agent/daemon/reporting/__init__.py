"""Telling Consul where this box is: the status key under a session, and the service registration.

``reporter.StatusReporter`` writes ``status/<node>``; ``session.SessionKeeper``
keeps the registration, its health check and the session bound to it.
"""

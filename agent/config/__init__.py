"""The TOML configuration: frozen pydantic models, loaded and validated all at once; the running daemon holds
plain copies of them (``plain``), validated in a short-lived child, and never loads pydantic.

Its own side because every other side reads it (the daemon, ``maintctl``,
the partners' settings, the clients' TLS and timeouts); it imports only the
core's types.
"""

"""Service managers a step can drive: systemd, supervisor, or configured commands.

Every backend implements ``base.ServiceBackend``; ``build_backend`` picks one
from a role's config table so steps never know which manager a box uses, and
imports only that one (``factory``: a box without supervisor never loads XML-RPC).
"""

from agent.daemon.backends.base import BackendError, RunState, ServiceBackend

__all__ = ["BackendError", "RunState", "ServiceBackend"]

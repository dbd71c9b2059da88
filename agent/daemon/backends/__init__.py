"""Service managers a step can drive: systemd, supervisor, or configured commands.

Every backend implements ``base.ServiceBackend``; ``build_backend`` picks one
from a role's config table so steps never know which manager a box uses.
"""

from agent.daemon.backends.base import BackendError, RunState, ServiceBackend
from agent.daemon.backends.factory import build_backend

__all__ = ["BackendError", "RunState", "ServiceBackend", "build_backend"]

"""py-consul's API, sending its requests through ``ConsulTransport``.

py-consul (the maintained fork of python-consul) knows Consul's endpoints and
their parameters: sessions, the local agent's services, checks and node
maintenance, KV writes. Its own HTTP client is built on ``requests``
(with ``urllib3``: about 8 MB of RSS and 45 ms of imports) and has a second
TLS setup and timeout rule of its own. As Patroni does
(``patroni/dcs/consul.py``), the API is kept and the HTTP client replaced:
``ConsulClient.http_connect`` returns ``TransportHTTPClient``, a
``consul.base.HTTPClient`` whose requests are the transport's.

Two things py-consul would decide are decided here instead:

- **The token.** py-consul's ``Consul`` takes ``CONSUL_HTTP_TOKEN`` over the
  token given in code, and some calls (``/v1/txn``) go without it. Here
  py-consul holds no token at all; the transport adds the gateway's to every
  request.
- **What an answer is.** The transport refuses what is not an answer (403,
  429, 5xx, any other 4xx) before py-consul's callbacks run, so they never
  raise their own exceptions for a status; what they still raise (an answer
  they cannot decode, a 404 where the endpoint needs the thing to exist) is
  turned into the transport's failures here.

Importing ``consul`` runs its package ``__init__``, which imports
``consul.std`` and with it ``requests``, although ``consul.base`` (the API)
needs neither. ``_api_without_requests`` registers the package without
running that ``__init__``, gives it the one name its API modules import from
it (``Check``), and leaves the rest to a module ``__getattr__`` that runs the
real ``__init__`` on first use, so code asking for py-consul's own client
still gets it (and pays for ``requests`` then).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from typing import Any

from agent.clients.consul_failures import BrokenAnswer, Refused
from agent.clients.consul_transport import ConsulTransport


def _api_without_requests() -> None:
    """Import ``consul.base`` without ``consul/__init__.py`` (see the module's docstring)."""
    if "consul" in sys.modules:
        return
    spec = importlib.util.find_spec("consul")
    if spec is None or spec.loader is None:
        raise ImportError("py-consul is not installed (pip install py-consul)")
    package = importlib.util.module_from_spec(spec)
    sys.modules["consul"] = package
    loader = spec.loader

    def complete(name: str) -> Any:
        """Anything else asked of the package: a submodule, or the real ``__init__``'s names."""
        if importlib.util.find_spec(f"consul.{name}") is not None:
            return importlib.import_module(f"consul.{name}")
        del package.__dict__["__getattr__"]
        loader.exec_module(package)
        return getattr(package, name)

    from consul.check import Check

    package.__dict__["Check"] = Check  # what consul.api.agent imports from the package
    importlib.import_module("consul.base")
    package.__dict__["__getattr__"] = complete


_api_without_requests()

from consul import base  # noqa: E402 - once the package is registered without its requests client
from consul.exceptions import ConsulException, NotFound  # noqa: E402


class TransportHTTPClient(base.HTTPClient):  # type: ignore[misc]  # py-consul ships no types
    """py-consul's HTTP client interface over ``ConsulTransport``: every request of py-consul's API goes through it.

    The ``headers`` py-consul passes hold only a token (``Consul.prepare_headers``),
    and this client's py-consul has none: the transport adds the gateway's.
    """

    def __init__(self, transport: ConsulTransport):
        super().__init__(transport.host, transport.port, transport.scheme)
        self.transport = transport

    def _answer(self, method: str, callback: Callable[[Any], Any], path: str, params: Any, data: str | bytes | None) -> Any:
        answer = self.transport.request(method, path, params or (), data or None)
        try:
            return callback(base.Response(answer.status, answer.headers, answer.text()))
        except NotFound as exc:
            raise Refused(404, str(exc).strip()[:200]) from None
        except (ConsulException, ValueError, KeyError, TypeError) as exc:
            raise BrokenAnswer(f"{type(exc).__name__}: {str(exc).strip()[:200]}") from None

    def get(self, callback: Callable[[Any], Any], path: str, params: Any = None, headers: Any = None, raw: bool = False) -> Any:
        return self._answer("GET", callback, path, params, None)

    def put(self, callback: Callable[[Any], Any], path: str, params: Any = None, data: str | bytes = "", headers: Any = None) -> Any:
        return self._answer("PUT", callback, path, params, data)

    def delete(self, callback: Callable[[Any], Any], path: str, params: Any = None, data: str | bytes = "", headers: Any = None) -> Any:
        return self._answer("DELETE", callback, path, params, data)

    def post(self, callback: Callable[[Any], Any], path: str, params: Any = None, data: str = "", headers: Any = None) -> Any:
        return self._answer("POST", callback, path, params, data)

    def close(self) -> None:
        self.transport.close()


class ConsulClient(base.Consul):  # type: ignore[misc]  # py-consul ships no types
    """py-consul's ``Consul`` on the transport: address, TLS and token come from the transport, never from ``CONSUL_*``."""

    def __init__(self, transport: ConsulTransport):
        self._transport = transport
        super().__init__(host=transport.host, port=transport.port, scheme=transport.scheme, verify=True)
        self.token = None  # the transport sends the gateway's token; py-consul would take CONSUL_HTTP_TOKEN's

    def http_connect(self, host: str, port: int, scheme: str, verify: bool | str = True, cert: Any = None) -> TransportHTTPClient:
        return TransportHTTPClient(self._transport)

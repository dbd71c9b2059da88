"""What a request to Consul that got no usable answer was, and the one mapping of it to the core's typed errors.

``ConsulTransport`` raises these; the gateway, which knows what the call was
for and which ACL rule it needs, turns each into the core's error with
``typed()``: by the HTTP status code, never by Consul's wording.

- ``Unreachable`` (no answer: refused, name not found, TLS, timed out, closed
  before answering) and ``BrokenAnswer`` (an answer Consul does not give:
  malformed, cut short, oversized, not the JSON asked for) are
  ``ConsulUnavailable``: worth a retry;
- ``Refused`` by status: 429 and 5xx are ``ConsulUnavailable`` (overloaded, no
  leader); 403 is ``ConsulPermissionDenied`` naming the rule; a redirect and
  every other 4xx are ``PermanentError``.

``connection_failure`` says why a connection failed in the operator's words,
with where to look (the CA, the server name, the address).
"""

from __future__ import annotations

import http.client
import socket
import ssl
from abc import ABC, abstractmethod

from agent.core.errors import ConsulPermissionDenied, ConsulUnavailable, MaintenanceAgentError, PermanentError


class TransportFailure(Exception, ABC):
    """A request that got no answer its caller can use; ``typed`` says which of the core's errors it is (each kind says)."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail

    @abstractmethod
    def typed(self, address: str, what: str, rule: str = "") -> MaintenanceAgentError:
        """The core's error for this failure of ``what`` (a call to Consul at ``address`` needing ACL ``rule``)."""


class Unreachable(TransportFailure):
    """No answer: refused, name not found, TLS failed, timed out, closed before answering."""

    def typed(self, address: str, what: str, rule: str = "") -> MaintenanceAgentError:
        return ConsulUnavailable(f"Consul at {address} unreachable during {what}: {self.detail}", delay=1.0)


class BrokenAnswer(TransportFailure):
    """An answer that is not one Consul gives: malformed, cut short, oversized, or not the JSON asked for."""

    def typed(self, address: str, what: str, rule: str = "") -> MaintenanceAgentError:
        return ConsulUnavailable(f"Consul at {address} gave a broken answer to {what}: {self.detail}", delay=1.0)


class Refused(TransportFailure):
    """An HTTP status that is not an answer to this request; ``detail`` is what Consul said."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status

    def typed(self, address: str, what: str, rule: str = "") -> MaintenanceAgentError:
        status, said = self.status, self.detail
        if status == 403:
            return ConsulPermissionDenied(f"Consul refused {what} (403 {said})", rule=rule)
        if status == 429 or status >= 500:  # overloaded, no leader, an RPC error: worth a retry
            return ConsulUnavailable(f"Consul at {address} failed {what}: HTTP {status} {said}", delay=1.0)
        if 300 <= status < 400:
            return PermanentError(f"Consul at {address} answered {what} with a redirect (HTTP {status} {said}); "
                                  "Consul never redirects: is that Consul's address?")
        return PermanentError(f"Consul at {address} refused {what}: {status} {said}")


_TLS_FAILURES = (
    # (marker in the error text, what it means, where to look); the first match wins
    ("Hostname mismatch", "hostname mismatch", "check the name: --tls-server-name, CONSUL_TLS_SERVER_NAME"),
    ("doesn't match", "hostname mismatch", "check the name: --tls-server-name, CONSUL_TLS_SERVER_NAME"),
    ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "check the CA: --ca-file, CONSUL_CACERT"),
    ("WRONG_VERSION_NUMBER", "the address does not speak TLS", "http:// instead of https://?"),
    ("certificate required", "Consul wants a client certificate", "--client-cert/--client-key, CONSUL_CLIENT_CERT/KEY"),
    ("alert", "Consul refused the handshake", "a client certificate signed by its CA? --client-cert, CONSUL_CLIENT_CERT"),
)
_SOCKET_FAILURES = (
    (ConnectionRefusedError, "connection refused"), (ConnectionResetError, "connection reset"),
    (ConnectionAbortedError, "connection aborted"), (BrokenPipeError, "Consul closed the connection"),
)


def connection_failure(exc: BaseException) -> str:
    """Why a request never got an answer, in the operator's words: refused, name not found, TLS, timeout."""
    text = str(exc)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        for marker, said, hint in _TLS_FAILURES:
            if marker in text:
                detail = text[text.find(marker):].split("(_ssl")[0].rstrip(" )'\"").split("] ", 1)[-1][:160]
                same = detail.lower().startswith(said)
                return f"TLS: {said + detail[len(said):] if same else f'{said} ({detail})'}; {hint}"
        return f"TLS: {text[:200]}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return "host name not found (DNS)" if exc.errno == socket.EAI_NONAME else f"DNS lookup failed ({exc.strerror})"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "Consul closed the connection without answering"
    for kind, said in _SOCKET_FAILURES:
        if isinstance(exc, kind):
            return said
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()  # no route to host, network is unreachable, ...
    return f"{type(exc).__name__}: {text[:200]}"

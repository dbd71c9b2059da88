"""A small UI/API app standing in for one web box's application (BillPay).

``/`` and ``/admin/`` answer HTML, ``/api/...`` answers JSON, ``/healthz`` is
HAProxy's health check. Creating the file ``fail_flag`` makes every answer a
500, so a test can make a smoke test fail.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

UI_MARKER = "Welcome to BillPay"
API_MARKER = '"service": "billpay"'


class WebApp:
    def __init__(self, name: str, host: str, port: int, fail_flag: Path):
        self.name = name
        self.fail_flag = fail_flag
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if app.fail_flag.exists():
                    self._send(500, "text/plain", f"{app.name}: internal error (demo failure switch)\n")
                elif self.path.startswith("/api/"):
                    body = json.dumps({"service": "billpay", "box": app.name, "path": self.path, "status": "ok"})
                    self._send(200, "application/json", body)
                elif self.path == "/healthz":
                    self._send(200, "text/plain", "ok\n")
                else:
                    self._send(200, "text/html; charset=utf-8",
                               f"<html><body><h1>{UI_MARKER}</h1><p>Sign in (served by {app.name})</p></body></html>\n")

            def _send(self, code: int, ctype: str, body: str) -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # health checks and keep-alive closes reset connections

        self.server = Server((host, port), Handler)
        self.address = f"{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name=f"webapp:{name}", daemon=True)

    def start(self) -> WebApp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

"""Real servers on 127.0.0.1 for tests, always bounded in time and always stopped.

What it offers:
- `free_port()`: a port nothing listens on.
- `ServerProcess(argv)`: runs a server command (any "{port}" in argv is filled in) in a subprocess on a free port,
  waits until `GET ready_path` answers 200, and stops it (terminate, then kill). `kill()` stops it abruptly (a
  crash mid-run); `start()` again restarts it on the same port. Its output goes to `log`, shown if it fails to start.
- `served_model(model_dir, ...)`: a `ServerProcess` running `w2s serve` on a local model; `.base_url` ends in /v1.
- `FaultProxy(upstream_base_url)`: a reverse proxy in front of a server that records every request
  (`requests`: method, path, JSON body) and injects faults: `fail(429, 500, "timeout", "drop")` makes the next
  requests answer with that status (OpenAI-style error body, a short retry-after), hang past the client's timeout,
  or close the connection; then traffic passes through again.
- `web_page()`: a server that answers every GET and POST with an HTML page (a web UI or login page at a base_url);
  yields its /v1 base URL.
All are context managers; use them in fixtures (`with ... as server: yield server`) so they stop whatever happens.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server subprocess on 127.0.0.1: started, waited for, stopped."""

    def __init__(
        self,
        argv: Sequence[str],
        ready_path: str = "/v1/models",
        start_timeout: float = 120.0,
        env: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ):
        self.port = free_port()
        self.argv, self.ready_path, self.start_timeout = list(argv), ready_path, start_timeout
        self.env, self.headers = env, headers or {}
        self.log = Path(tempfile.mkstemp(prefix="server-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> ServerProcess:
        argv = [a.replace("{port}", str(self.port)) for a in self.argv]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            if self._ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready within {self.start_timeout:.0f}s:\n{self.log.read_text()[-3000:]}")

    def _ready(self) -> bool:
        request = urllib.request.Request(self.url + self.ready_path, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """Stop at once, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ServedModel(ServerProcess):
    """`w2s serve` of a local model directory."""

    def __init__(self, model_dir: Path | str, name: str = "strong", api_key_env: str | None = None, **kwargs):
        argv = [sys.executable, "-m", "harness.cli", "serve", str(model_dir), "--name", name, "--port", "{port}"]
        argv += ["--device", "cpu"] + (["--api-key-env", api_key_env] if api_key_env else [])
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        headers = {"Authorization": f"Bearer {os.environ[api_key_env]}"} if api_key_env else None
        super().__init__(argv, env=env, headers=headers, **kwargs)
        self.name = name

    @property
    def base_url(self) -> str:
        return self.url + "/v1"


def served_model(model_dir: Path | str, **kwargs) -> ServedModel:
    return ServedModel(model_dir, **kwargs)


class FaultProxy:
    """A reverse proxy on 127.0.0.1 that records requests and injects the faults it is told to."""

    def __init__(self, upstream_base_url: str, hang_seconds: float = 5.0):
        parts = urlsplit(upstream_base_url)
        self.upstream = (parts.hostname, parts.port)
        self.prefix = parts.path.rstrip("/")
        self.hang_seconds = hang_seconds
        self.requests: list[tuple[str, str, dict | None]] = []
        self.faults: list[int | str] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer((HOST, 0), self._handler())
        self.server.daemon_threads = True

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.server.server_address[1]}{self.prefix}"

    def fail(self, *faults: int | str) -> None:
        """The next requests, one fault each: an HTTP status, "timeout" (no answer for hang_seconds) or "drop"."""
        with self.lock:
            self.faults.extend(faults)

    def posts(self, path_suffix: str = "/completions") -> list[dict]:
        """JSON bodies of the POST requests seen whose path ends with `path_suffix`."""
        with self.lock:
            return [body for method, path, body in self.requests if method == "POST" and path.endswith(path_suffix)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self._handle()

            def do_POST(self) -> None:
                self._handle()

            def _handle(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    body = json.loads(data) if data else None
                    proxy.requests.append((self.command, self.path, body))
                    fault = proxy.faults.pop(0) if proxy.faults else None
                if fault == "timeout":
                    time.sleep(proxy.hang_seconds)
                    self.close_connection = True
                    return
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(fault, int):
                    payload = json.dumps({"error": {"message": f"injected {fault}", "type": "test", "code": fault}})
                    self._answer(fault, payload.encode(), {"Content-Type": "application/json", "retry-after-ms": "20"})
                    return
                self._forward(data)

            def _forward(self, data: bytes) -> None:
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=300)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                try:
                    conn.request(self.command, self.path, body=data or None, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                except OSError:
                    self._answer(502, b'{"error": {"message": "upstream unreachable"}}', {})
                    return
                finally:
                    conn.close()
                keep = {k: v for k, v in response.getheaders() if k.lower() in ("content-type",)}
                self._answer(response.status, payload, keep)

            def _answer(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up first
                    pass

        return Handler

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True, name="fault-proxy").start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def web_page() -> Iterator[str]:
    """A server answering every GET and POST with a login page, as a web UI mistaken for an API does."""
    page = b"<html><body>Sign in</body></html>"

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.do_GET()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()

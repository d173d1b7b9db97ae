"""A scripted OpenAI-compatible judge on 127.0.0.1: it answers chat completions in the OpenAI wire format, with
logprobs, as gpt-4-turbo answers alpaca_eval's weighted annotator: one token, "m" or "M", and its top logprobs.

It reads the two outputs out of the annotator's prompt and prefers the longer one, with probability
`P_PREFERRED`; an instruction containing "NO VERDICT" gets an answer with neither token among the top logprobs
(a failed verdict). It serves the model names in `models` (404 for others). Once `drop_after` completions were
answered (None: never), it closes every further connection unanswered, as a server that died; once
`rate_limit_after` were, it answers every further one 429 as OpenAI words it. Every request (headers and JSON body)
is recorded in `requests`. Use it as a context manager.
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"
LOGPROB_PREFERRED = -0.25
LOGPROB_OTHER = -1.75
P_PREFERRED = math.exp(LOGPROB_PREFERRED) / (math.exp(LOGPROB_PREFERRED) + math.exp(LOGPROB_OTHER))
OUTPUT = re.compile(r'"model_identifier": "(m|M)",\s*"output": """(.*?)"""\s*}', re.S)


def expected_preference(reference: str, response: str) -> float:
    """The preference the annotator should derive from this server's answer (2: the response preferred)."""
    if len(response) == len(reference):
        return 1.5
    return 1 + (P_PREFERRED if len(response) > len(reference) else 1 - P_PREFERRED)


class JudgeServer:
    def __init__(self, models: tuple[str, ...] = ("judge-model",)):
        self.models = models
        self.drop_after: int | None = None
        self.rate_limit_after: int | None = None
        self.answered = 0
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer((HOST, 0), self._handler())
        self.server.daemon_threads = True

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.server.server_address[1]}/v1"

    def completions(self) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"].endswith("/chat/completions")]

    def answer(self, body: dict) -> dict:
        prompt = body["messages"][-1]["content"]
        outputs = dict((token, text) for token, text in OUTPUT.findall(prompt))
        if "NO VERDICT" in prompt:
            top = [("Both", -0.1), ("The", -2.5)]
        elif len(outputs["m"]) == len(outputs["M"]):
            top = [("m", math.log(0.5)), ("M", math.log(0.5))]
        else:
            best = "m" if len(outputs["m"]) > len(outputs["M"]) else "M"
            top = [(best, LOGPROB_PREFERRED), ("m" if best == "M" else "M", LOGPROB_OTHER), ("Both", -9.0)]
        entries = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top[: body["top_logprobs"]]]
        token = entries[0]["token"]
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": token},
                    "logprobs": {"content": [dict(entries[0], top_logprobs=entries)]},
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 1, "total_tokens": 101},
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in judge.models]})

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(data)
                with judge.lock:
                    judge.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    dead = judge.drop_after is not None and judge.answered >= judge.drop_after
                    limited = judge.rate_limit_after is not None and judge.answered >= judge.rate_limit_after
                    judge.answered += not (dead or limited)
                if limited:
                    message = f"Rate limit reached for {body.get('model')} on requests per min (RPM): Limit 3, Used 3."
                    error = {"message": message, "type": "requests", "param": None, "code": "rate_limit_exceeded"}
                    self._send(429, {"error": error}, {"retry-after-ms": "20"})
                    return
                if dead:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if body.get("model") not in judge.models:
                    self._send(404, {"error": {"message": f"model {body.get('model')} not found", "code": 404}})
                    return
                self._send(200, judge.answer(body))

            def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def __enter__(self) -> JudgeServer:
        threading.Thread(target=self.server.serve_forever, daemon=True, name="judge-server").start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

"""A real HTTP server on 127.0.0.1 speaking the Anthropic Messages API and the OpenAI Chat
Completions API with canned replies; it records every request it gets.

Tests point the real SDKs at it with ``base_url`` (``server.url`` for anthropic,
``server.openai_url`` for openai), so requests, retries, timeouts and error bodies cross a real
socket. ``respond(seen) -> Reply | str`` chooses each answer; a string is a successful reply with
usage counted from the text (prompt characters / 4 in, reply characters / 4 out).
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import re
import threading
import time
from typing import Any, Callable

CHECKER_MARK = "You review exploration functions"  # first words of the checker's system prompt
LLM_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "OPENAI_API_KEY", "OPENAI_BASE_URL")


def clear_llm_env(monkeypatch: Any) -> Any:
    """Unset every variable that makes ``auto`` pick an LLM (keys and endpoints)."""
    for var in LLM_ENV:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@dataclasses.dataclass
class Reply:
    """One canned answer: a reply text (status 200), an API error, or raw bytes."""

    text: str = ""
    usage: dict | None = None  # the protocol's own usage object (default: counted)
    status: int = 200
    error: str = ""  # error type, e.g. "rate_limit_error": an error body of the protocol
    raw: bytes | None = None  # sent as is (malformed replies)
    delay: float = 0.0  # seconds before answering (timeouts)
    headers: dict = dataclasses.field(default_factory=dict)


def error(status: int, kind: str) -> Reply:
    """An API error the SDKs may retry after 10 ms (``retry-after-ms``)."""
    return Reply(status=status, error=kind, headers={"retry-after-ms": "10", "retry-after": "0"})


def peak_concurrency(seen: list["Seen"]) -> int:
    """Most requests the server was answering at the same moment."""
    events = sorted([(s.start, 1) for s in seen] + [(s.end, -1) for s in seen])
    active = peak = 0
    for _, step in events:
        active += step
        peak = max(peak, active)
    return peak


@dataclasses.dataclass
class Seen:
    """A request the server got."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    start: float
    end: float = 0.0
    usage: dict | None = None  # the usage object the server answered with

    @property
    def protocol(self) -> str:
        return "anthropic" if self.path.endswith("/messages") else "openai"

    def system(self) -> str:
        """The system text (either protocol)."""
        if self.protocol == "anthropic":
            sys = self.body.get("system", "")
            return sys if isinstance(sys, str) else "".join(b["text"] for b in sys)
        return next((m["content"] for m in self.body["messages"] if m["role"] == "system"), "")

    def last_text(self) -> str:
        """The text of the last message."""
        return self.texts()[-1]

    def is_checker(self) -> bool:
        return self.system().startswith(CHECKER_MARK)

    def texts(self) -> list[str]:
        """The text of every message, in order."""
        out = []
        for m in self.body["messages"]:
            c = m["content"]
            out.append(c if isinstance(c, str) else "".join(b["text"] for b in c))
        return out

    def slot(self) -> int:
        """The slot of a generator or repair request, from its focus line ("candidate N of K")."""
        found = re.findall(r"candidate (\d+) of", "\n".join(self.texts()))
        return int(found[-1]) - 1

    def first_generation(self) -> bool:
        """True for a generator request of iteration 1 (one user turn, no feedback yet)."""
        turns = [m for m in self.body["messages"] if m["role"] != "system"]
        return len(turns) == 1 and "This is round" not in self.texts()[-1]

    def prompt_chars(self) -> int:
        return len(json.dumps(self.body.get("messages", []))) + len(self.system())


def _success(seen: Seen, reply: Reply, n: int) -> dict:
    model = seen.body.get("model", "?")
    n_in, n_out = seen.prompt_chars() // 4, max(1, len(reply.text) // 4)
    if seen.protocol == "anthropic":
        return {
            "id": f"msg_{n:04d}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": reply.text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": reply.usage or {"input_tokens": n_in, "output_tokens": n_out},
        }
    return {
        "id": f"chatcmpl-{n:04d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": "stop",
            }
        ],
        "usage": reply.usage
        or {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out},
    }


def _error_body(seen: Seen, reply: Reply) -> dict:
    message = f"test server: {reply.error}"
    if seen.protocol == "anthropic":
        return {"type": "error", "error": {"type": reply.error, "message": message}}
    return {"error": {"message": message, "type": reply.error, "param": None, "code": None}}


class LLMTestServer:
    """``with LLMTestServer(respond) as server:`` a threaded server on a free loopback port."""

    def __init__(
        self,
        respond: Callable[[Seen], Reply | str] | None = None,
        models: tuple[str, ...] = ("test-model",),
    ) -> None:
        self.respond = respond or (lambda seen: "ok")
        self.models = models
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the Anthropic SDK's base_url)."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def openai_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (the OpenAI SDK's base_url)."""
        return self.url + "/v1"

    @property
    def requests(self) -> list[Seen]:
        """The completion requests received so far (model listings excluded), in arrival order."""
        with self._lock:
            return [s for s in self._seen if s.method == "POST"]

    def __enter__(self) -> "LLMTestServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _answer(self, seen: Seen) -> tuple[int, dict, bytes, float]:
        if seen.method == "GET":
            if not seen.path.endswith("/models"):
                return 404, {}, b'{"error": {"message": "no such path"}}', 0.0
            data = [{"id": m, "object": "model", "owned_by": "test"} for m in self.models]
            return 200, {}, json.dumps({"object": "list", "data": data}).encode(), 0.0
        if not seen.path.endswith(("/v1/messages", "/v1/chat/completions")):
            return 404, {}, b'{"error": {"message": "no such path"}}', 0.0
        reply = self.respond(seen)
        reply = Reply(text=reply) if isinstance(reply, str) else reply
        if reply.raw is not None:
            body = reply.raw
        elif reply.error:
            body = json.dumps(_error_body(seen, reply)).encode()
        else:
            with self._lock:
                n = len(self._seen)
            success = _success(seen, reply, n)
            seen.usage = success["usage"]
            body = json.dumps(success).encode()
        return reply.status, reply.headers, body, reply.delay

    def _handler(self) -> type:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                size = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(size) if size else b""
                seen = Seen(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    json.loads(raw) if raw else None,
                    time.monotonic(),
                )
                with server._lock:
                    server._seen.append(seen)
                status, headers, body, delay = server._answer(seen)
                time.sleep(delay)
                seen.end = time.monotonic()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out
                    pass

            do_GET = do_POST = _serve

        return Handler

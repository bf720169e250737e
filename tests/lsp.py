"""A small Language Server Protocol client over stdio, enough to drive yaml-language-server
as an editor does: JSON-RPC with Content-Length framing, server requests answered, and
diagnostics collected per document as the server publishes them."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from pathlib import Path
from typing import Any

# What the VS Code YAML extension sends, less the schema store (no network in tests).
SETTINGS = {
    "yaml": {
        "validate": True,
        "hover": True,
        "completion": True,
        "format": {"enable": False},
        "schemaStore": {"enable": False},
        "schemas": {},
    }
}


class Client:
    """One language server process; `request` waits for its answer, `diagnostics` for the
    next diagnostics published for a document."""

    def __init__(self, command: list[str], root: Path, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self._next = 0
        self._answers: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._published: dict[str, queue.Queue[list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        capabilities = {
            "textDocument": {
                "completion": {"completionItem": {"snippetSupport": True}},
                "hover": {"contentFormat": ["markdown", "plaintext"]},
                "publishDiagnostics": {"relatedInformation": True},
            },
            "workspace": {"configuration": True, "didChangeConfiguration": {}},
        }
        self.request(
            "initialize",
            {
                "processId": None,
                "rootUri": root.as_uri(),
                "capabilities": capabilities,
                "initializationOptions": SETTINGS,
            },
        )
        self.notify("initialized", {})
        self.notify("workspace/didChangeConfiguration", {"settings": SETTINGS})

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self._process.stdin is not None
        self._process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self._process.stdin.flush()

    def _read(self) -> None:
        stream = self._process.stdout
        assert stream is not None
        while True:
            headers: dict[str, str] = {}
            while (line := stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            if not headers:
                return  # the server exited
            message = json.loads(stream.read(int(headers["content-length"])))
            if "id" in message and "method" in message:  # a request from the server
                self._answer(message)
            elif "id" in message:
                self._answers[message["id"]].put(message)
            elif message.get("method") == "textDocument/publishDiagnostics":
                params = message["params"]
                self._queue(params["uri"]).put(params["diagnostics"])

    def _answer(self, message: dict[str, Any]) -> None:
        result: Any = None
        if message["method"] == "workspace/configuration":
            result = [
                SETTINGS["yaml"] if i.get("section") == "yaml" else None
                for i in message["params"]["items"]
            ]
        self._send({"id": message["id"], "result": result})

    def _queue(self, uri: str) -> queue.Queue[list[dict[str, Any]]]:
        with self._lock:
            return self._published.setdefault(uri, queue.Queue())

    def request(self, method: str, params: dict[str, Any]) -> Any:
        self._next += 1
        answer: queue.Queue[dict[str, Any]] = queue.Queue()
        self._answers[self._next] = answer
        self._send({"id": self._next, "method": method, "params": params})
        message = answer.get(timeout=self.timeout)
        assert "error" not in message, message["error"]
        return message["result"]

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self._send({"method": method, "params": params})

    def open(self, path: Path, text: str | None = None) -> str:
        """Open PATH (with TEXT in place of its content, if given); its file:// URI."""
        uri = path.resolve().as_uri()
        document = {
            "uri": uri,
            "languageId": "yaml",
            "version": 1,
            "text": path.read_text() if text is None else text,
        }
        self.notify("textDocument/didOpen", {"textDocument": document})
        return uri

    def diagnostics(self, uri: str) -> list[dict[str, Any]]:
        return self._queue(uri).get(timeout=self.timeout)

    def completion(self, uri: str, line: int, character: int) -> list[dict[str, Any]]:
        where = {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}
        result = self.request("textDocument/completion", where)
        return list(result["items"] if isinstance(result, dict) else result or [])

    def hover(self, uri: str, line: int, character: int) -> str:
        where = {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}
        result = self.request("textDocument/hover", where)
        if not result:
            return ""
        contents = result["contents"]
        return contents["value"] if isinstance(contents, dict) else str(contents)

    def close(self) -> None:
        try:
            self.request("shutdown", {})
            self.notify("exit", {})
            self._process.wait(timeout=5)
        except Exception:
            self._process.kill()
            self._process.wait()

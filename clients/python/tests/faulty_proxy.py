"""A TCP proxy in front of the real service that misbehaves the way networks do.

Every byte is relayed unchanged in both directions, except:

- the first ``drop_event_streams`` answers to an event-stream request (``GET .../events``) are
  cut off, both sockets closed, right after their first complete event has reached the client:
  what a client sees when a load balancer or a flaky network drops a long-lived connection;
- the first ``corrupt_models`` answers to a model download (``GET .../model``) have the first
  byte of their body flipped: a download damaged on the way.
"""

from __future__ import annotations

import socket
import threading
from typing import Optional


class FaultyProxy:
    def __init__(
        self, upstream_host: str, upstream_port: int, *, drop_event_streams: int = 0, corrupt_models: int = 0
    ) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._faults = {"events": drop_event_streams, "model": corrupt_models}
        self._closed = False
        #: Requests seen per kind ("events", "model"), and faults done per kind.
        self.requests = {"events": 0, "model": 0}
        self.faults = {"events": 0, "model": 0}
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def __enter__(self) -> "FaultyProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(downstream,), daemon=True).start()

    def _take_fault(self, kind: str) -> bool:
        with self._lock:
            if self._faults.get(kind, 0) <= 0:
                return False
            self._faults[kind] -= 1
            self.faults[kind] += 1
            return True

    def _serve(self, downstream: socket.socket) -> None:
        upstream = socket.create_connection(self._upstream)
        # The request direction names the kind of each request it relays. HTTP/1.1 answers in
        # order and the client sends its next request only after the previous answer, so the
        # bytes that come back after a request line belong to that request's answer.
        latest: list[Optional[str]] = [None]
        fresh = threading.Event()
        threading.Thread(target=self._relay_requests, args=(downstream, upstream, latest, fresh), daemon=True).start()
        response = bytearray()
        fault: Optional[str] = None
        try:
            while True:
                chunk = bytearray(upstream.recv(65536))
                if not chunk:
                    break
                if fresh.is_set():
                    fresh.clear()
                    response = bytearray()
                    fault = latest[0] if latest[0] and self._take_fault(latest[0]) else None
                start = len(response)
                response += chunk
                if fault == "events":
                    cut = _end_of_first_event(response)
                    if cut is not None:
                        downstream.sendall(chunk[: max(0, cut - start)])
                        return
                elif fault == "model":
                    body = _body_start(response)
                    if body is not None and body < len(response):
                        chunk[body - start] ^= 0xFF
                        fault = None
                downstream.sendall(chunk)
        except OSError:
            pass
        finally:
            _close(downstream)
            _close(upstream)

    def _relay_requests(
        self, downstream: socket.socket, upstream: socket.socket, latest: list[Optional[str]], fresh: threading.Event
    ) -> None:
        try:
            while True:
                chunk = downstream.recv(65536)
                if not chunk:
                    break
                for line in chunk.split(b"\r\n"):
                    kind = _request_kind(line)
                    if kind is not None:
                        latest[0] = kind if kind in self.requests else None
                        if latest[0]:
                            with self._lock:
                                self.requests[kind] += 1
                        fresh.set()
                upstream.sendall(chunk)
        except OSError:
            pass
        finally:
            _close(upstream)


def _request_kind(line: bytes) -> Optional[str]:
    """``events``, ``model`` or ``other`` for an HTTP request line; ``None`` for anything else."""
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/") or parts[0] not in (b"GET", b"POST", b"DELETE"):
        return None
    path = parts[1].split(b"?")[0]
    if parts[0] == b"GET" and path.endswith(b"/events"):
        return "events"
    if parts[0] == b"GET" and path.endswith(b"/model"):
        return "model"
    return "other"


def _body_start(response: bytes) -> Optional[int]:
    end = response.find(b"\r\n\r\n")
    return None if end < 0 else end + 4


def _end_of_first_event(response: bytes) -> Optional[int]:
    """The offset just past the first event's blank line, once the response holds it."""
    body = _body_start(response)
    if body is None:
        return None
    data = response.find(b"data:", body)
    if data < 0:
        return None
    end = response.find(b"\n\n", data)
    return None if end < 0 else end + 2


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()

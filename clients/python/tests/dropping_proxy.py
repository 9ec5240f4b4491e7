"""A TCP proxy in front of the real service that cuts event streams short.

Every byte is relayed unchanged in both directions, except that the first ``drops`` responses
to an event-stream request (a request line naming ``/events``) are cut off, both sockets closed,
right after their first complete event has reached the client: what a client sees when a load
balancer or a flaky network drops a long-lived connection.
"""

from __future__ import annotations

import socket
import threading
from typing import Optional


class DroppingProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, drops: int = 1) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._drops_left = drops
        self._closed = False
        #: Event-stream requests seen, and how many of them were cut.
        self.event_streams = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def __enter__(self) -> "DroppingProxy":
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

    def _serve(self, downstream: socket.socket) -> None:
        upstream = socket.create_connection(self._upstream)
        # Set by the request direction when it relays an event-stream request line; the response
        # direction then watches that response for its first event.
        watch = threading.Event()
        threading.Thread(target=self._requests, args=(downstream, upstream, watch), daemon=True).start()
        response = bytearray()
        watching = False
        try:
            while True:
                chunk = upstream.recv(65536)
                if not chunk:
                    break
                if watch.is_set() and not watching:
                    # HTTP/1.1 answers requests in order, and the client sends the next request
                    # only after the previous answer: what follows belongs to the stream.
                    watching, response = True, bytearray()
                if watching:
                    start = len(response)
                    response += chunk
                    cut = _end_of_first_event(response)
                    if cut is not None and self._take_drop():
                        downstream.sendall(chunk[: max(0, cut - start)])
                        return
                    if cut is not None:
                        watching = False
                        watch.clear()
                downstream.sendall(chunk)
        except OSError:
            pass
        finally:
            _close(downstream)
            _close(upstream)

    def _requests(self, downstream: socket.socket, upstream: socket.socket, watch: threading.Event) -> None:
        try:
            while True:
                chunk = downstream.recv(65536)
                if not chunk:
                    break
                for line in chunk.split(b"\r\n"):
                    if line.startswith(b"GET ") and b"/events" in line:
                        with self._lock:
                            self.event_streams += 1
                        watch.set()
                upstream.sendall(chunk)
        except OSError:
            pass
        finally:
            _close(upstream)

    def _take_drop(self) -> bool:
        with self._lock:
            if self._drops_left <= 0:
                return False
            self._drops_left -= 1
            self.dropped += 1
            return True


def _end_of_first_event(response: bytes) -> Optional[int]:
    """The offset just past the first event's blank line, once the response holds it."""
    head_end = response.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    data = response.find(b"data:", head_end)
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

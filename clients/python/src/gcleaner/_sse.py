"""A Server-Sent Events parser (the WHATWG event-stream format) over decoded lines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional

__all__ = ["ServerSentEvent", "parse_events"]


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event.

    ``id`` is the stream's last event id at dispatch time (``None`` while the server has sent
    none); ``retry`` is the reconnection delay in milliseconds the server asked for, if any.
    """

    event: str
    data: str
    id: Optional[str] = None
    retry: Optional[int] = None


def parse_events(lines: Iterable[str], on_line: Optional[Callable[[], None]] = None) -> Iterator[ServerSentEvent]:
    """Yields the events of a stream given as lines without their line endings.

    ``on_line`` is called for every line, comments (keep-alives) included, so a caller can check
    a deadline while the stream is quiet.
    """
    event = ""
    data: list[str] = []
    last_id: Optional[str] = None
    retry: Optional[int] = None
    for line in lines:
        if on_line is not None:
            on_line()
        if line == "":
            # A blank line dispatches; an event without data lines is dropped (per the spec).
            if data:
                yield ServerSentEvent(event or "message", "\n".join(data), last_id, retry)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            if "\0" not in value:
                last_id = value
        elif field == "retry":
            if value.isdigit():
                retry = int(value)

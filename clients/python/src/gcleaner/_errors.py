"""The one exception type of the client."""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

import httpx

__all__ = ["GcleanerError"]


class GcleanerError(Exception):
    """Any failure of a gcleaner call.

    The service answers every error as an RFC 9457 problem (``application/problem+json``) with a
    stable ``code``; this exception carries it. The same type is raised for a job that ended
    without a result (``code`` is then the job's own error code, e.g. ``invalid_input`` or
    ``canceled``) and for failures the client detects itself:

    ``connection_error``
        The service could not be reached, or kept dropping the connection.
    ``timeout``
        :meth:`gcleaner.Job.wait` ran past its ``timeout``.
    ``checksum_mismatch``
        A downloaded model does not hash to the ``ETag`` the service sent.
    ``deleted``
        The job was deleted while being followed.
    ``unexpected_response``
        An answer that is not what the API documents (e.g. a proxy's HTML error page); ``code``
        is then ``http_<status>`` when the answer carried an HTTP error status.

    Attributes:
        code: The problem's stable machine-readable code.
        status: The HTTP status of the problem, or ``None`` when no HTTP answer was involved.
        detail: A human-readable explanation.
        title: The problem's short title, when the service sent one.
        problem: The problem object as received (empty when the client made it up).
        job: The job's last known state, for errors about one job (failed, canceled, timed out).
    """

    code: str
    status: Optional[int]
    detail: str
    title: Optional[str]
    problem: dict[str, Any]
    job: Optional[Any]

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        status: Optional[int] = None,
        title: Optional[str] = None,
        problem: Optional[Mapping[str, Any]] = None,
        job: Optional[Any] = None,
    ) -> None:
        self.code = code
        self.status = status
        self.detail = detail
        self.title = title
        self.problem = dict(problem) if problem else {}
        self.job = job
        where = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{code}{where}: {detail}")

    @classmethod
    def from_problem(cls, problem: Mapping[str, Any], *, job: Optional[Any] = None) -> "GcleanerError":
        """Builds the error from a problem object (an error response body or a job's ``error``)."""
        status = problem.get("status")
        return cls(
            str(problem.get("code") or "unknown_error"),
            str(problem.get("detail") or problem.get("title") or "no detail given"),
            status=status if isinstance(status, int) else None,
            title=problem.get("title") if isinstance(problem.get("title"), str) else None,
            problem=problem,
            job=job,
        )

    @classmethod
    def from_response(cls, response: httpx.Response) -> "GcleanerError":
        """Builds the error from an HTTP error answer, problem+json or not."""
        problem: Any = None
        try:
            problem = json.loads(response.read())
        except (ValueError, httpx.HTTPError):
            pass
        if isinstance(problem, dict) and isinstance(problem.get("code"), str):
            error = cls.from_problem(problem)
            # The HTTP status is the truth when the body disagrees or lacks one.
            error.status = response.status_code
            return error
        try:
            text = response.text.strip()
        except (httpx.HTTPError, UnicodeDecodeError):
            text = ""
        return cls(
            f"http_{response.status_code}",
            f"{response.request.method} {response.request.url.path} answered {response.status_code} "
            f"{response.reason_phrase} without a problem document" + (f": {text[:200]}" if text else ""),
            status=response.status_code,
        )

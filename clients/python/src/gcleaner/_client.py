"""The service client: :class:`Client` submits and lists jobs, :class:`Job` follows one."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping, Optional, Union

import httpx

from ._errors import GcleanerError
from ._sse import parse_events

__all__ = ["Client", "Job", "Source", "JobStatus", "TERMINAL_STATUSES"]

#: A file to upload: a path, the file's bytes, or a binary file object open for reading.
Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes]]
#: ``queued``, ``running``, ``succeeded``, ``failed`` or ``canceled``.
JobStatus = str
#: The statuses a job never leaves.
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})

# The service sends a keep-alive comment every 10 s on an event stream; three missed ones mean
# the connection is dead even if the socket has not noticed.
_STREAM_READ_TIMEOUT = 30.0
# Submission answers only after the upload is validated (the model's tensors checked, the data
# parsed), which can take a while for large files.
_UPLOAD_READ_TIMEOUT = 300.0
_RETRY_AFTER_CAP = 30.0
_BACKOFF_CAP = 10.0


def _backoff(failures: int) -> float:
    return float(min(_BACKOFF_CAP, 0.25 * 2 ** max(0, failures - 1)))


def _retry_after(response: httpx.Response) -> float:
    raw = response.headers.get("Retry-After", "")
    try:
        return float(min(_RETRY_AFTER_CAP, max(0.0, float(raw))))
    except ValueError:
        return 1.0


def _transport_error(exc: httpx.TransportError, what: str) -> GcleanerError:
    return GcleanerError("connection_error", f"{what}: {type(exc).__name__}: {exc}")


class _Part:
    """One multipart part, re-openable so that a retried submission sends it from the start."""

    def __init__(self, name: str, source: Source, content_type: str) -> None:
        self.name = name
        self.content_type = content_type
        self._path: Optional[Path] = None
        self._bytes: Optional[bytes] = None
        self._file: Optional[IO[bytes]] = None
        self._start = 0
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._bytes = bytes(source)
            self.filename = name
        elif isinstance(source, (str, os.PathLike)):
            self._path = Path(source)
            if not self._path.is_file():
                raise GcleanerError("invalid_argument", f"{name}: {self._path} is not a readable file")
            self.filename = self._path.name
        elif isinstance(source, io.TextIOBase):
            raise GcleanerError("invalid_argument", f"{name}: open the file in binary mode ('rb')")
        elif hasattr(source, "read"):
            self._file = source
            self.filename = Path(str(getattr(source, "name", name))).name or name
            # A file that cannot be rewound is sent once: a retry would send it truncated.
            seekable = getattr(source, "seekable", None)
            self._start = source.tell() if seekable is not None and seekable() else -1
        else:
            raise GcleanerError(
                "invalid_argument", f"{name}: expected a path, bytes or a binary file, got {type(source).__name__}"
            )

    @property
    def replayable(self) -> bool:
        return self._file is None or self._start >= 0

    def open(self) -> IO[bytes]:
        if self._bytes is not None:
            return io.BytesIO(self._bytes)
        if self._path is not None:
            return open(self._path, "rb")
        assert self._file is not None
        if self._start >= 0:
            self._file.seek(self._start)
        return self._file

    def owns(self, handle: IO[bytes]) -> bool:
        return handle is not self._file


def _json_part(name: str, value: Union[Mapping[str, Any], str, "os.PathLike[str]", bytes]) -> _Part:
    """A JSON part from a mapping, JSON bytes, or the path of a JSON file."""
    if isinstance(value, Mapping):
        try:
            encoded = json.dumps(value).encode()
        except (TypeError, ValueError) as exc:
            raise GcleanerError("invalid_argument", f"{name} is not JSON-serialisable: {exc}") from None
        part = _Part(name, encoded, "application/json")
        part.filename = f"{name}.json"
        return part
    return _Part(name, value, "application/json")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _etag_sha256(etag: Optional[str]) -> Optional[str]:
    """The sha256 in the model's ETag (the service documents it as the quoted hex digest)."""
    if not etag:
        return None
    tag = etag.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    tag = tag.strip('"').lower()
    if len(tag) == 64 and all(c in "0123456789abcdef" for c in tag):
        return tag
    return None


class Client:
    """A connection to a gcleaner service (``gcleaner serve``).

    Args:
        base_url: The service's root, e.g. ``http://127.0.0.1:8080`` (a path prefix is kept, for
            a service behind a reverse proxy).
        token: An API token from ``gcleaner token create``; defaults to the ``GCLEANER_TOKEN``
            environment variable. ``None`` sends no credentials (a service started with
            ``--insecure-no-auth``).
        timeout: Seconds to wait for the service on an ordinary request.
        max_retries: How often a request is repeated after a dropped connection or a
            ``429``/``503`` answer (honouring ``Retry-After``). Only requests that are safe to
            repeat are: reads, and submissions (they always carry an ``Idempotency-Key``).
        transport: An ``httpx`` transport, e.g. to route through a proxy or to set TLS options.

    The client is a context manager; :meth:`close` releases its connections.

    Example::

        with gcleaner.Client("http://127.0.0.1:8080", token) as client:
            job = client.purify("suspect.safetensors", "clean.json").wait()
            print(job.report()["verdict"]["summary"])
            job.download_model("purified.safetensors")
    """

    def __init__(
        self,
        base_url: str,
        token: Optional[str] = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        from . import __version__

        if token is None:
            token = os.environ.get("GCLEANER_TOKEN") or None
        headers = {"User-Agent": f"gcleaner-python/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self.max_retries = max(0, max_retries)
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=False,
            transport=transport,
        )

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the client's connections; the client cannot be used afterwards."""
        self._http.close()

    def __repr__(self) -> str:
        return f"gcleaner.Client({self.base_url!r})"

    # Requests -----------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        repeatable: bool,
        build: Optional[Callable[[], tuple[dict[str, Any], Callable[[], None]]]] = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Sends a request and returns its successful (< 400) answer, read in full.

        ``build`` makes fresh request arguments for every attempt (upload bodies are consumed)
        and a function that releases them afterwards. Dropped connections are retried only when
        ``repeatable``; 429 and 503 always are, because the service refuses those before doing
        anything.
        """
        failures = 0
        while True:
            args = dict(kwargs)
            release: Optional[Callable[[], None]] = None
            if build is not None:
                extra, release = build()
                args.update(extra)
            try:
                response = self._http.request(method, path, **args)
            except httpx.TransportError as exc:
                failures += 1
                if not repeatable or failures > self.max_retries:
                    raise _transport_error(exc, f"{method} {path}") from exc
                time.sleep(_backoff(failures))
                continue
            finally:
                if release is not None:
                    release()
            if response.status_code in (429, 503) and failures < self.max_retries:
                failures += 1
                time.sleep(_retry_after(response))
                continue
            if response.status_code >= 400:
                raise GcleanerError.from_response(response)
            return response

    def _get_json(self, path: str, **kwargs: Any) -> Any:
        response = self._send("GET", path, repeatable=True, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise GcleanerError(
                "unexpected_response", f"GET {path} did not answer JSON", status=response.status_code
            ) from None

    # API ----------------------------------------------------------------------------------

    def purify(
        self,
        model: Source,
        data: Source,
        eval: Optional[Source] = None,
        config: Optional[Union[Mapping[str, Any], str, "os.PathLike[str]", bytes]] = None,
        idempotency_key: Optional[str] = None,
        *,
        spec: Optional[Union[Mapping[str, Any], str, "os.PathLike[str]", bytes]] = None,
    ) -> "Job":
        """Submits a purification job and returns it, queued.

        Args:
            model: The suspect model: a gcleaner safetensors file (PyG parameter names, the spec
                in the ``gcleaner.spec`` metadata; see :func:`gcleaner.export_pyg`).
            data: The clean labelled sample: ``gcleaner.graphs/v1`` JSON, GIN text, or a zip or
                tar.gz of a TU dataset directory.
            eval: Optional zip or tar.gz of an attack directory written by ``gcleaner attack``;
                the report then gives the true attack success rate before and after.
            config: Optional purification parameters: a mapping (e.g.
                ``{"unlearn": {"epochs": 30}}``), JSON bytes, or the path of a JSON file.
            idempotency_key: Repeating a submission with the same key and payload returns the
                original job instead of a new one; the same key with another payload is refused
                (``idempotency_key_reused``). When ``None`` the client makes one up for this
                call, so that its own retries after a dropped connection cannot queue the job
                twice.
            spec: Optional model spec used instead of the one embedded in the model.

        Each file argument is a path, bytes, or a binary file object.

        Raises:
            GcleanerError: the upload was refused, e.g. ``pickle_refused`` (415),
                ``invalid_model``, ``invalid_data``, ``data_model_mismatch`` or
                ``invalid_config`` (422), or the service could not be reached.
        """
        parts = [_Part("model", model, "application/octet-stream")]
        if spec is not None:
            parts.append(_json_part("spec", spec))
        parts.append(_Part("data", data, "application/octet-stream"))
        if eval is not None:
            parts.append(_Part("eval", eval, "application/octet-stream"))
        if config is not None:
            parts.append(_json_part("config", config))
        key = idempotency_key if idempotency_key is not None else f"gcleaner-python-{uuid.uuid4()}"

        def build() -> tuple[dict[str, Any], Callable[[], None]]:
            handles = [(part, part.open()) for part in parts]

            def release() -> None:
                for part, handle in handles:
                    if part.owns(handle):
                        handle.close()

            files = [(part.name, (part.filename, handle, part.content_type)) for part, handle in handles]
            return {"files": files}, release

        response = self._send(
            "POST",
            "/v1/jobs",
            repeatable=all(part.replayable for part in parts),
            build=build,
            headers={"Idempotency-Key": key},
            timeout=httpx.Timeout(self._timeout, connect=min(self._timeout, 10.0), read=_UPLOAD_READ_TIMEOUT),
        )
        return Job(self, response.json())

    def scan(
        self,
        model: Source,
        data: Source,
        eval: Optional[Source] = None,
        config: Optional[Mapping[str, Any]] = None,
        idempotency_key: Optional[str] = None,
        *,
        spec: Optional[Union[Mapping[str, Any], str, "os.PathLike[str]", bytes]] = None,
    ) -> "Job":
        """Submits a scan job: the trigger is recovered and judged as in :meth:`purify`, nothing
        is unlearned, and the report (its ``verdict``) is the whole result.

        The arguments are :meth:`purify`'s; ``config`` (a mapping here) gets ``"mode": "scan"``.
        The job's :meth:`Job.download_model` raises ``scan_has_no_model`` (409).
        """
        return self.purify(model, data, eval, {**(config or {}), "mode": "scan"}, idempotency_key, spec=spec)

    def job(self, job_id: str) -> "Job":
        """The job with this id, as it is now.

        Raises:
            GcleanerError: ``not_found`` (404) for an unknown id or another tenant's job.
        """
        return Job(self, self._get_json(f"/v1/jobs/{_path_segment(job_id)}"))

    def jobs(self, status: Optional[JobStatus] = None, *, page_size: int = 20) -> Iterator["Job"]:
        """Iterates over this tenant's jobs, newest first, fetching pages as it goes.

        Args:
            status: Only jobs in this status (``queued``, ``running``, ``succeeded``,
                ``failed``, ``canceled``).
            page_size: Jobs per request, 1 to 100.

        Raises:
            GcleanerError: ``invalid_parameter`` (400) for an unknown status or a page size out
                of range.
        """
        page_token: Optional[str] = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if status is not None:
                params["status"] = status
            if page_token is not None:
                params["page_token"] = page_token
            page = self._get_json("/v1/jobs", params=params)
            for item in page.get("jobs", []):
                yield Job(self, item)
            page_token = page.get("next_page_token")
            if not page_token:
                return


def _path_segment(job_id: str) -> str:
    job_id = str(job_id)
    if not job_id or "/" in job_id or "?" in job_id or "#" in job_id:
        raise GcleanerError("invalid_argument", f"{job_id!r} is not a job id")
    return job_id


class Job:
    """One purification job, as last seen (submission, :meth:`refresh`, :meth:`wait` events).

    The attributes mirror the service's job object (``GET /v1/jobs/{id}``); :attr:`data` is the
    whole object as received.
    """

    def __init__(self, client: Client, data: Mapping[str, Any]) -> None:
        self._client = client
        self._data: dict[str, Any] = dict(data)
        if not isinstance(self._data.get("id"), str):
            raise GcleanerError("unexpected_response", f"a job object without an id: {self._data!r}")

    def __repr__(self) -> str:
        phase = f", phase={self.phase!r}" if self.phase else ""
        return f"gcleaner.Job(id={self.id!r}, status={self.status!r}{phase})"

    @property
    def data(self) -> dict[str, Any]:
        """The job object as the service last sent it."""
        return dict(self._data)

    @property
    def id(self) -> str:
        """The job's id (a UUID)."""
        return str(self._data["id"])

    @property
    def status(self) -> JobStatus:
        """``queued``, ``running``, ``succeeded``, ``failed`` or ``canceled``."""
        return str(self._data.get("status"))

    @property
    def mode(self) -> str:
        """``purify``, or ``scan`` for a job whose config asked for a verdict and report only
        (such a job never has a model to download)."""
        return str(self._data.get("mode") or "purify")

    @property
    def phase(self) -> Optional[str]:
        """While running: ``validating``, ``recovery``, ``unlearning`` or ``evaluating``."""
        return self._data.get("phase")

    @property
    def progress(self) -> Optional[dict[str, Any]]:
        """``{"epoch", "total", "fraction"}`` within the current phase, or ``None``."""
        return self._data.get("progress")

    @property
    def error(self) -> Optional[dict[str, Any]]:
        """The problem object of a failed or canceled job (``code``, ``detail``, ...)."""
        return self._data.get("error")

    @property
    def attempts(self) -> int:
        """How many times a worker has started the job."""
        return int(self._data.get("attempts", 0))

    @property
    def cancel_requested(self) -> bool:
        """Whether a cancel was requested (a running job stops at its next epoch boundary)."""
        return bool(self._data.get("cancel_requested", False))

    @property
    def created_at(self) -> Optional[str]:
        """Submission time (RFC 3339)."""
        return self._data.get("created_at")

    @property
    def finished_at(self) -> Optional[str]:
        """The time the job ended (RFC 3339), ``None`` while unfinished."""
        return self._data.get("finished_at")

    @property
    def done(self) -> bool:
        """Whether the job has ended (succeeded, failed or canceled)."""
        return self.status in TERMINAL_STATUSES

    def _path(self, suffix: str = "") -> str:
        return f"/v1/jobs/{_path_segment(self.id)}{suffix}"

    def refresh(self) -> "Job":
        """Reads the job's current state from the service; returns the job itself."""
        self._data = dict(self._client._get_json(self._path()))
        return self

    def _outcome(self) -> "Job":
        if self.status == "succeeded":
            return self
        problem = dict(self.error or {})
        problem.setdefault("code", self.status)
        problem.setdefault("detail", f"the job ended {self.status}")
        raise GcleanerError.from_problem(problem, job=self)

    def wait(self, progress: Optional[Callable[["Job"], None]] = None, timeout: Optional[float] = None) -> "Job":
        """Follows the job's event stream until it ends; returns the job once it succeeded.

        Args:
            progress: Called with this job after every event (the first carries the state at
                the time of connecting, then each status, phase or progress change).
            timeout: Give up after this many seconds (``None``: wait as long as it takes). The
                stream is quiet between events but for keep-alives every 10 s, so the error
                comes at most about that much late.

        A dropped connection is re-opened (with backoff; given up after ``max_retries`` + 5
        failed tries in a row). The service's stream carries no event ids to resume from, but
        each new stream starts with the job's current state, so no end state is missed; should
        the service send ids, ``Last-Event-ID`` is sent back on reconnecting.

        Raises:
            GcleanerError: the job failed or was canceled (``code`` from the job's ``error``,
                e.g. ``invalid_input`` or ``canceled``; ``job`` holds it), was deleted
                (``deleted``), the timeout passed (``timeout``), or the stream could not be
                re-opened (``connection_error``).
        """
        client = self._client
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.done:
            return self._outcome()

        def check_deadline() -> None:
            if deadline is not None and time.monotonic() >= deadline:
                raise GcleanerError(
                    "timeout", f"job {self.id} still {self.status} after {timeout} s", job=self
                )

        last_event_id: Optional[str] = None
        reconnect_delay_ms: Optional[int] = None
        failures = 0
        last_problem = "no connection was made"
        while True:
            check_deadline()
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if last_event_id is not None:
                headers["Last-Event-ID"] = last_event_id
            read_timeout = _STREAM_READ_TIMEOUT
            if deadline is not None:
                read_timeout = max(0.05, min(read_timeout, deadline - time.monotonic()))
            timeouts = httpx.Timeout(client._timeout, connect=min(client._timeout, 10.0), read=read_timeout)
            try:
                with client._http.stream("GET", self._path("/events"), headers=headers, timeout=timeouts) as response:
                    if response.status_code in (429, 503):
                        last_problem = f"the service answered {response.status_code}"
                        delay = _retry_after(response)
                    elif response.status_code >= 400:
                        raise GcleanerError.from_response(response)
                    else:
                        for event in parse_events(response.iter_lines(), on_line=check_deadline):
                            failures = 0
                            if event.id is not None:
                                last_event_id = event.id
                            if event.retry is not None:
                                reconnect_delay_ms = event.retry
                            if event.event == "deleted":
                                raise GcleanerError("deleted", f"job {self.id} was deleted", job=self)
                            if event.event not in ("status", "progress"):
                                continue  # an event kind this client does not know yet
                            try:
                                self._data = dict(json.loads(event.data))
                            except (ValueError, TypeError):
                                raise GcleanerError(
                                    "unexpected_response", f"an event whose data is not a job: {event.data[:200]!r}"
                                ) from None
                            if progress is not None:
                                progress(self)
                            if self.done:
                                return self._outcome()
                        # The stream ended before the job did: the service is shutting down.
                        last_problem = "the stream ended before the job"
                        delay = None
            except httpx.TransportError as exc:
                last_problem = f"{type(exc).__name__}: {exc}"
                delay = None
            failures += 1
            if failures > client.max_retries + 5:
                raise GcleanerError(
                    "connection_error",
                    f"the event stream of job {self.id} could not be re-opened after {failures} tries: {last_problem}",
                    job=self,
                )
            if delay is None:
                delay = reconnect_delay_ms / 1000 if reconnect_delay_ms is not None else _backoff(failures)
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - time.monotonic()))
            time.sleep(delay)

    def report(self) -> dict[str, Any]:
        """The purification report (``gcleaner.report/v1``: the verdict, the recovered trigger,
        accuracy and flip rate before and after).

        Raises:
            GcleanerError: ``job_not_succeeded`` (409) until the job has succeeded.
        """
        report = self._client._get_json(self._path("/report"), headers={"Accept": "application/json"})
        if not isinstance(report, dict):
            raise GcleanerError("unexpected_response", "the report is not a JSON object")
        return report

    def report_html(self) -> str:
        """The report as a self-contained HTML page."""
        return self._client._send("GET", self._path("/report.html"), repeatable=True).text

    def download_model(self, path: Union[str, "os.PathLike[str]"]) -> Path:
        """Downloads the purified model to ``path`` (a file, or a directory to put
        ``purified-<id>.safetensors`` in) and returns the file's path.

        The file's SHA-256 is checked against the ``ETag`` the service sends (its quoted
        sha256), and the file appears only once it has passed. When ``path`` already holds the
        same model (``If-None-Match`` answered 304), it is left as it is.

        Raises:
            GcleanerError: ``job_not_succeeded`` (409) until the job has succeeded,
                ``checksum_mismatch`` when the bytes do not match the ETag.
        """
        client = self._client
        target = Path(path)
        if target.is_dir():
            target = target / f"purified-{self.id}.safetensors"
        headers = {"Accept": "application/octet-stream"}
        if target.is_file():
            headers["If-None-Match"] = f'"{_sha256_file(target)}"'
        failures = 0
        while True:
            try:
                with client._http.stream("GET", self._path("/model"), headers=headers) as response:
                    if response.status_code == 304:
                        return target
                    if response.status_code in (429, 503) and failures < client.max_retries:
                        failures += 1
                        time.sleep(_retry_after(response))
                        continue
                    if response.status_code >= 400:
                        raise GcleanerError.from_response(response)
                    expected = _etag_sha256(response.headers.get("ETag"))
                    if expected is None:
                        raise GcleanerError(
                            "unexpected_response",
                            f"the model download carries no sha256 ETag (got {response.headers.get('ETag')!r})",
                            status=response.status_code,
                        )
                    self._write_checked(response, target, expected)
                    return target
            except httpx.TransportError as exc:
                failures += 1
                if failures > client.max_retries:
                    raise _transport_error(exc, f"downloading the model of job {self.id}") from exc
                time.sleep(_backoff(failures))

    @staticmethod
    def _write_checked(response: httpx.Response, target: Path, expected: str) -> None:
        # Written beside the target and renamed into place, so a failed or corrupt download never
        # leaves a partial file under the target's name.
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    out.write(chunk)
            actual = digest.hexdigest()
            if actual != expected:
                raise GcleanerError(
                    "checksum_mismatch",
                    f"the downloaded model hashes to {actual}, the service's ETag says {expected}",
                    status=response.status_code,
                )
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()

    def cancel(self) -> "Job":
        """Cancels the job: a queued job ends canceled at once, a running one stops at its next
        epoch boundary (follow it with :meth:`wait`). Returns the job itself, updated.

        Raises:
            GcleanerError: ``job_finished`` (409) when the job had already ended.
        """
        response = self._client._send("POST", self._path("/cancel"), repeatable=False)
        self._data = dict(response.json())
        return self

    def delete(self) -> None:
        """Deletes the job and its files (a running job loses its lease and stops)."""
        self._client._send("DELETE", self._path(), repeatable=False)

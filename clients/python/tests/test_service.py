"""The client against a live `gcleaner serve` (tests/client/run.sh starts it): no mocks."""

from __future__ import annotations

import json
import pickle
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import LONG_CONFIG, QUICK_CONFIG, Attack, Service, sha256
from faulty_proxy import FaultyProxy
from safetensors import safe_open

import gcleaner


def test_purify_end_to_end(client: gcleaner.Client, service: Service, attack: Attack, tmp_path: Path) -> None:
    # Paths, bytes and file objects are all accepted as uploads.
    with open(attack.eval_archive, "rb") as eval_file:
        job = client.purify(attack.model, attack.clean_sample.read_bytes(), eval=eval_file, config=QUICK_CONFIG)
    assert job.status in ("queued", "running")

    seen: list[tuple[str, object]] = []
    done = job.wait(progress=lambda j: seen.append((j.status, j.phase)), timeout=180)
    assert done is job and job.status == "succeeded" and job.done
    assert seen and seen[-1][0] == "succeeded"
    assert client.job(job.id).status == "succeeded"

    report = job.report()
    assert report["format"] == "gcleaner.report/v1"
    assert report["input_sha256"] == sha256(attack.model)
    assert report["config"]["unlearn"]["epochs"] == 2
    assert isinstance(report["verdict"]["summary"], str)
    assert report["verdict"]["model_changed"] is True
    # The eval archive made the true attack success rate part of the report.
    assert 0.0 <= report["attack"]["after"]["asr"] <= 1.0
    assert "<html" in job.report_html().lower()

    target = tmp_path / "purified.safetensors"
    assert job.download_model(target) == target
    assert sha256(target) != sha256(attack.model)
    # Loaded back: the same tensors and spec as the input, and gcleaner itself runs it.
    with safe_open(str(target), framework="numpy") as purified, safe_open(str(attack.model), framework="numpy") as original:
        assert set(purified.keys()) == set(original.keys())
        for name in original.keys():
            assert purified.get_slice(name).get_shape() == original.get_slice(name).get_shape(), name
    assert gcleaner.read_spec(target) == gcleaner.read_spec(attack.model)
    evaluation = json.loads(service.run("eval", "--model", str(target), "--data", str(attack.clean_sample), "--json"))
    assert evaluation, "gcleaner eval gave no result for the purified model"

    # A second download of an unchanged file is a 304: the file is left as it is.
    before = target.stat().st_mtime_ns
    time.sleep(0.01)
    job.download_model(target)
    assert target.stat().st_mtime_ns == before
    # A damaged local copy does not match the ETag, so it is downloaded again and checked.
    expected = sha256(target)
    target.write_bytes(b"damaged")
    job.download_model(tmp_path)  # a directory: the file gets the job's name inside it
    assert sha256(tmp_path / f"purified-{job.id}.safetensors") == expected
    job.download_model(target)
    assert sha256(target) == expected

    # A download damaged on the way fails its ETag check and leaves no file behind.
    upstream = urlsplit(service.url)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    with FaultyProxy(upstream.hostname or "127.0.0.1", upstream.port or 80, corrupt_models=1) as proxy:
        with gcleaner.Client(proxy.url, service.token) as proxied:
            with pytest.raises(gcleaner.GcleanerError) as mismatch:
                proxied.job(job.id).download_model(damaged / "model.safetensors")
            assert mismatch.value.code == "checksum_mismatch"
            assert list(damaged.iterdir()) == []
            proxied.job(job.id).download_model(damaged / "model.safetensors")
        assert proxy.faults["model"] == 1 and proxy.requests["model"] == 2
    assert sha256(damaged / "model.safetensors") == expected


def test_refused_uploads_raise_with_the_problem_code(client: gcleaner.Client, service: Service, attack: Attack) -> None:
    with pytest.raises(gcleaner.GcleanerError) as refused:
        client.purify(pickle.dumps({"conv1.weight": [1.0, 2.0]}), attack.clean_sample)
    assert (refused.value.code, refused.value.status) == ("pickle_refused", 415)
    assert refused.value.detail and refused.value.problem["type"] == "urn:gcleaner:problem:pickle_refused"

    with pytest.raises(gcleaner.GcleanerError) as refused:
        client.purify(attack.model, attack.clean_sample, config={"unlearn": {"epoch": 2}})
    assert (refused.value.code, refused.value.status) == ("invalid_config", 422)
    assert "epoch" in refused.value.detail

    # Graph labels the model does not know.
    sample = json.loads(attack.clean_sample.read_text())
    for graph in sample["graphs"]:
        graph["label"] = 7
    sample.pop("class_labels", None)
    with pytest.raises(gcleaner.GcleanerError) as refused:
        client.purify(attack.model, json.dumps(sample).encode(), config=QUICK_CONFIG)
    assert (refused.value.code, refused.value.status) == ("data_model_mismatch", 422)

    with gcleaner.Client(service.url, "gcl_not-a-token") as stranger:
        with pytest.raises(gcleaner.GcleanerError) as refused:
            stranger.purify(attack.model, attack.clean_sample)
    assert (refused.value.code, refused.value.status) == ("unauthenticated", 401)

    with pytest.raises(gcleaner.GcleanerError) as refused:
        client.job(str(uuid.uuid4()))
    assert (refused.value.code, refused.value.status) == ("not_found", 404)

    with pytest.raises(gcleaner.GcleanerError) as refused:
        list(client.jobs(status="finished"))
    assert (refused.value.code, refused.value.status) == ("invalid_parameter", 400)

    # Mistakes the client catches before sending anything.
    with pytest.raises(gcleaner.GcleanerError) as refused:
        client.purify(attack.model, attack.clean_sample.with_name("missing.json"))
    assert (refused.value.code, refused.value.status) == ("invalid_argument", None)
    with open(attack.clean_sample) as text_file, pytest.raises(gcleaner.GcleanerError) as refused:
        client.purify(attack.model, text_file)
    assert refused.value.code == "invalid_argument" and "binary" in refused.value.detail


def test_idempotency_key_replays_the_same_job(client: gcleaner.Client, attack: Attack) -> None:
    key = f"client-test-{uuid.uuid4()}"
    first = client.purify(attack.model, attack.clean_sample, config=LONG_CONFIG, idempotency_key=key)
    try:
        again = client.purify(attack.model, attack.clean_sample, config=LONG_CONFIG, idempotency_key=key)
        assert again.id == first.id
        with pytest.raises(gcleaner.GcleanerError) as refused:
            client.purify(attack.model, attack.clean_sample, config=QUICK_CONFIG, idempotency_key=key)
        assert (refused.value.code, refused.value.status) == ("idempotency_key_reused", 422)
    finally:
        first.cancel()
    with pytest.raises(gcleaner.GcleanerError) as ended:
        first.wait(timeout=120)
    assert ended.value.code == "canceled"


def test_wait_survives_a_dropped_event_stream_and_cancel_stops_a_running_job(
    client: gcleaner.Client, service: Service, attack: Attack
) -> None:
    # Occupy the only worker, so the followed job is still queued when its stream is cut.
    blocker = client.purify(attack.model, attack.clean_sample, config=LONG_CONFIG)
    deadline = time.monotonic() + 120
    while blocker.refresh().status != "running":
        assert time.monotonic() < deadline, f"the first job never started: {blocker!r}"
        time.sleep(0.2)

    upstream = urlsplit(service.url)
    with FaultyProxy(upstream.hostname or "127.0.0.1", upstream.port or 80, drop_event_streams=1) as proxy:
        with gcleaner.Client(proxy.url, service.token) as proxied:
            job = proxied.purify(attack.model, attack.clean_sample, config=QUICK_CONFIG)
            assert job.status == "queued"
            seen: list[tuple[int, str]] = []

            def on_event(j: gcleaner.Job) -> None:
                seen.append((proxy.requests["events"], j.status))
                if len(seen) == 1:
                    # The cut stream's only event: the job waits behind the blocker. Cancel the
                    # blocker, so that the job runs and ends while the client follows it.
                    assert j.status == "queued"
                    assert blocker.cancel().cancel_requested

            job.wait(progress=on_event, timeout=180)
        assert job.status == "succeeded"
        assert proxy.faults["events"] == 1 and proxy.requests["events"] >= 2
        assert seen[0] == (1, "queued")
        assert any(streams >= 2 for streams, _ in seen), seen
        assert seen[-1][1] == "succeeded"

    # The blocker stopped at an epoch boundary; waiting on it raises with the job's error.
    with pytest.raises(gcleaner.GcleanerError) as canceled:
        blocker.wait(timeout=120)
    assert canceled.value.code == "canceled"
    assert canceled.value.job is blocker and blocker.status == "canceled"
    for call in (blocker.report, lambda: blocker.download_model(Path("unused.safetensors"))):
        with pytest.raises(gcleaner.GcleanerError) as refused:
            call()
        assert (refused.value.code, refused.value.status) == ("job_not_succeeded", 409)
    assert not Path("unused.safetensors").exists()
    with pytest.raises(gcleaner.GcleanerError) as refused:
        blocker.cancel()
    assert (refused.value.code, refused.value.status) == ("job_finished", 409)


class CountingTransport(httpx.HTTPTransport):
    """The ordinary HTTP transport, recording the requests it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.URL] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.url)
        return super().handle_request(request)


def test_jobs_iterates_every_page(service: Service, attack: Attack) -> None:
    # Another tenant, so that the list holds exactly this test's jobs.
    transport = CountingTransport()
    with gcleaner.Client(service.url, service.token_2, transport=transport) as pages:
        assert list(pages.jobs()) == []
        submitted = []
        for _ in range(5):
            job = pages.purify(attack.model, attack.clean_sample, config=LONG_CONFIG)
            # Queued jobs end canceled at once; one the worker took stops at an epoch boundary.
            job.cancel()
            submitted.append(job)
        for job in submitted:
            with pytest.raises(gcleaner.GcleanerError) as ended:
                job.wait(timeout=120)
            assert ended.value.code == "canceled"

        transport.requests.clear()
        listed = [job.id for job in pages.jobs(page_size=2)]
        assert listed == [job.id for job in reversed(submitted)]
        list_requests = [url for url in transport.requests if url.path == "/v1/jobs"]
        assert len(list_requests) == 3
        assert all("page_token" in url.params for url in list_requests[1:])

        assert [job.id for job in pages.jobs(status="canceled", page_size=100)] == listed
        assert list(pages.jobs(status="succeeded")) == []
        with pytest.raises(gcleaner.GcleanerError) as refused:
            list(pages.jobs(page_size=0))
        assert (refused.value.code, refused.value.status) == ("invalid_parameter", 400)


def test_wait_gives_up_at_its_timeout_and_raises_when_the_job_is_deleted(client: gcleaner.Client, attack: Attack) -> None:
    job = client.purify(attack.model, attack.clean_sample, config=LONG_CONFIG)
    started = time.monotonic()
    with pytest.raises(gcleaner.GcleanerError) as late:
        job.wait(timeout=1.5)
    assert late.value.code == "timeout" and late.value.job is job and not job.done
    assert time.monotonic() - started < 15

    with pytest.raises(gcleaner.GcleanerError) as gone:
        job.wait(progress=lambda j: j.delete(), timeout=60)
    assert gone.value.code == "deleted"
    with pytest.raises(gcleaner.GcleanerError) as missing:
        job.refresh()
    assert (missing.value.code, missing.value.status) == ("not_found", 404)


def test_scan_returns_a_verdict_and_no_model(client: gcleaner.Client, attack: Attack, tmp_path: Path) -> None:
    quick = {k: v for k, v in QUICK_CONFIG.items() if k != "force"}  # force means unlearning
    job = client.scan(attack.model, attack.clean_sample, config=quick).wait(timeout=180)
    assert job.mode == "scan" and job.status == "succeeded"
    report = job.report()
    assert report["config"]["mode"] == "scan"
    assert isinstance(report["verdict"]["backdoor_evidence"], bool)
    with pytest.raises(gcleaner.GcleanerError) as refused:
        job.download_model(tmp_path / "model.safetensors")
    assert (refused.value.code, refused.value.status) == ("scan_has_no_model", 409)
    assert list(tmp_path.iterdir()) == []

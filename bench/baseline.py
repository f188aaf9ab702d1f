"""The plain-RAG baseline: what a user would write with llama-index instead of docqa.

A ``VectorStoreIndex`` over a collection on the *same Chroma server*, the *same MiniLM*
(llama-index's ``HuggingFaceEmbedding`` pointed at the packaged model) and the *same
SmolLM2 GGUF* (llama-index's ``LlamaCPP``, prompts rendered with the GGUF's own chat
template), queried with the default query engine (top-2 retrieval, default QA prompt).
Only what must differ for an offline, comparable run is set: a local tokenizer for
llama-index (its default fetches tiktoken data), ``temperature=0`` and the service's
``max_tokens``. Each document carries its corpus key as metadata, hidden from embedding and
prompt, so its sources can be scored as citations. Abstention = the answer text says it
cannot answer / does not know / the context has no such information (or is empty).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from bench.evalkit import AskRecord, EvalDoc, EvalQuestion, log
from core.settings import Settings, apply_offline_env

ABSTAIN = re.compile(
    r"\b(?:cannot|can't|can not|unable to|could not|couldn't) (?:be )?(?:answer|determine|find|"
    r"provide|say|tell|know|be determined|be answered)|\b(?:do not|don't|does not|doesn't) "
    r"(?:know|have (?:any |enough )?(?:information|context|data)|provide|mention|contain|say|"
    r"specify|state)|\bno (?:information|mention|answer|relevant|context|data)\b|\bnot "
    r"(?:mentioned|provided|stated|specified|given|available|found|included|clear|known)\b|"
    r"^\s*empty response\s*$|\bunknown\b|\bI'm sorry\b|\bsorry\b",
    re.I,
)


def abstained(text: str) -> bool:
    return not text.strip() or bool(ABSTAIN.search(text))


def _embed_model(settings: Settings) -> Any:
    """llama-index's HuggingFace embedding on the packaged MiniLM, its tokenizer local."""
    from llama_index.core import Settings as LlamaSettings
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from transformers import AutoTokenizer

    model_dir = str(settings.models.resolved_embedding_path())
    LlamaSettings.tokenizer = AutoTokenizer.from_pretrained(model_dir).encode
    LlamaSettings.embed_model = HuggingFaceEmbedding(model_name=model_dir, device="cpu")
    return LlamaSettings.embed_model


def _chroma_client(settings: Settings) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    return chromadb.HttpClient(host=settings.chroma.host, port=settings.chroma.port,
                               settings=ChromaSettings(anonymized_telemetry=False))


def baseline_ingest(settings: Settings, texts: Sequence[str], collection: str,
                    drop: bool = False) -> dict[str, Any]:
    """The baseline's ingest alone (bench/ingest.py): ``VectorStoreIndex.from_documents``
    of ``texts`` into a new collection ``collection`` of the same Chroma server, timed from
    the documents to the last write (the models are loaded before). ``drop``: remove the
    collection afterwards. Returns seconds and the nodes written."""
    apply_offline_env()
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.vector_stores.chroma import ChromaVectorStore

    embed = _embed_model(settings)
    embed.get_text_embedding("warm-up")  # untimed, as the raw encode's warm-up
    client = _chroma_client(settings)
    coll = client.get_or_create_collection(collection, embedding_function=None)
    try:
        t = time.perf_counter()
        VectorStoreIndex.from_documents(
            [Document(text=text) for text in texts],
            storage_context=StorageContext.from_defaults(
                vector_store=ChromaVectorStore(chroma_collection=coll)))
        seconds = time.perf_counter() - t
        nodes = coll.count()
    finally:
        if drop:
            client.delete_collection(collection)
    return {"seconds": seconds, "nodes": nodes}


class LlamaIndexBaseline:
    def __init__(self, settings: Settings, docs: Sequence[EvalDoc], collection: str,
                 top_k: int = 2) -> None:
        apply_offline_env()
        from llama_index.core import Document, StorageContext, VectorStoreIndex
        from llama_index.core import Settings as LlamaSettings
        from llama_index.llms.llama_cpp import LlamaCPP
        from llama_index.vector_stores.chroma import ChromaVectorStore

        _embed_model(settings)
        self.llm = LlamaCPP(
            model_path=str(settings.models.resolved_generator_path()),
            temperature=0.0,
            max_new_tokens=settings.models.max_tokens,
            context_window=settings.models.n_ctx,
            model_kwargs={"n_threads": settings.models.n_threads},
            verbose=False,
        )
        render = gguf_chat_renderer(self.llm._model)
        self.llm.messages_to_prompt = lambda messages: render(
            [{"role": m.role.value, "content": m.content or ""} for m in messages])
        self.llm.completion_to_prompt = lambda text: render([{"role": "user", "content": text}])
        LlamaSettings.llm = self.llm

        client = _chroma_client(settings)
        coll = client.get_or_create_collection(collection, embedding_function=None)
        store = ChromaVectorStore(chroma_collection=coll)
        if coll.count() == 0:
            t = time.perf_counter()
            documents = [Document(text=text, metadata=meta,
                                  excluded_embed_metadata_keys=list(meta),
                                  excluded_llm_metadata_keys=list(meta))
                         for text, meta in _documents(docs)]
            index = VectorStoreIndex.from_documents(
                documents, storage_context=StorageContext.from_defaults(vector_store=store))
            log(f"baseline: indexed {len(docs)} documents in {time.perf_counter() - t:.0f}s")
        else:
            log(f"baseline: re-using collection {collection} ({coll.count()} nodes)")
            index = VectorStoreIndex.from_vector_store(store)
        self.engine = index.as_query_engine(similarity_top_k=top_k)

    def asker(self) -> Callable[[EvalQuestion], AskRecord]:
        def ask(q: EvalQuestion) -> AskRecord:
            t = time.perf_counter()
            try:
                response = self.engine.query(q.question)
            except Exception as exc:  # noqa: BLE001 - scored as an error, the run goes on
                return AskRecord(q.qid, "error", "", [], time.perf_counter() - t, error=repr(exc))
            seconds = time.perf_counter() - t
            text = str(response).strip()
            keys = [str(n.node.metadata.get("key", "")) for n in response.source_nodes]
            pages = [n.node.metadata.get("page") for n in response.source_nodes]
            status = "not_found" if abstained(text) else "answered"
            return AskRecord(q.qid, status, text, keys, seconds, cited_pages=pages)
        return ask


def _documents(docs: Sequence[EvalDoc]) -> list[tuple[str, dict[str, Any]]]:
    """(text, metadata) per llama-index Document: one per document, or one per page for a
    document read page by page (as llama-index's own PDF reader does), so its sources carry
    a page to score like docqa's citations. The metadata is hidden from embedding and prompt."""
    out: list[tuple[str, dict[str, Any]]] = []
    for d in docs:
        if d.pages:
            out.extend((text, {"key": d.key, "page": n})
                       for n, text in enumerate(d.pages, start=1) if text.strip())
        else:
            out.append((d.text, {"key": d.key}))
    return out


def gguf_chat_renderer(llama: Any) -> Callable[[list[dict[str, str]]], str]:
    """Render messages with the chat template stored in the GGUF (as llama-cpp does)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        raise RuntimeError("the GGUF has no chat template")
    eos = llama._model.token_get_text(llama.token_eos())
    bos = llama._model.token_get_text(llama.token_bos())
    formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

    def render(messages: list[dict[str, str]]) -> str:
        return formatter(messages=cast(Any, messages)).prompt

    return render

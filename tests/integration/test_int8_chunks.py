"""``models.chunk_embedding_backend=onnx-int8`` on the real stack: the worker embeds chunks
with the int8 model while the API embeds questions in fp32, and the fp32 questions find the
int8 chunks (docs/architecture.md, "Ingest speed")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.settings import Settings
from ingest.embedding import OnnxEmbedder
from ingest.store import tenant_get
from tests.integration.conftest import ONNX_CACHE, Stack, run_stack
from tests.private_redis import session_redis_url

pytestmark = pytest.mark.integration

DOCS = {
    "boilers.txt": "The boiler room in building C is inspected every March by the district "
                   "safety office. The last inspection found a worn pressure valve on boiler 2.",
    "canteen.txt": "The canteen serves lunch from 11:30 to 14:00. Vegetarian dishes are "
                   "marked green on the weekly menu, which is posted every Friday.",
    "parking.txt": "Visitors park on level -1 of the north garage. Their parking tickets are "
                   "validated at the reception desk before they leave.",
}


@pytest.fixture(scope="module")
def int8_chunks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with run_stack(tmp_path_factory.mktemp("docqa-int8-chunks"), session_redis_url(30),
                   {"DOCQA_MODELS__CHUNK_EMBEDDING_BACKEND": "onnx-int8",
                    "DOCQA_LOAD_GENERATOR": "false"}) as st:
        yield st


def test_int8_chunks_are_stored_and_found_by_fp32_questions(int8_chunks: Stack) -> None:
    with int8_chunks.client("acme") as client:
        ids = {name: client.upload_bytes(name, text.encode(), None)["id"]
               for name, text in DOCS.items()}
        final = client.wait_ready(list(ids.values()), timeout=600)
        assert {final[i]["status"] for i in ids.values()} == {"ready"}, final

        # what Chroma holds is the int8 model's vector of the chunk, not the fp32 one
        path = Settings().models.resolved_embedding_path()
        int8 = OnnxEmbedder(path, Path(ONNX_CACHE), quantized=True)
        fp32 = OnnxEmbedder(path, Path(ONNX_CACHE))
        doc_id = ids["boilers.txt"]
        ((_sealed, text),) = int8_chunks.stored_chunks("acme", doc_id)
        stored = tenant_get(int8_chunks.chroma(), "acme", where={"document_id": doc_id},
                            include=["embeddings"])["embeddings"]
        vector = np.asarray(stored[0], dtype=np.float32)
        assert float(vector @ int8.embed_array([text])[0]) > 0.9999
        assert float(vector @ fp32.embed_array([text])[0]) < 0.9999

        for name, question in (("boilers.txt", "Which boiler had a worn valve?"),
                               ("canteen.txt", "When is lunch served in the canteen?"),
                               ("parking.txt", "Where do visitors park?")):
            hits = client.search(question, top_k=3, mode="dense")["results"]
            assert hits[0]["document_id"] == ids[name], hits
            answer = client.ask(question)
            assert answer["status"] == "answered", answer
            assert answer["citations"][0]["document_id"] == ids[name], answer

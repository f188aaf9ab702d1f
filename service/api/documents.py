"""``/v1/documents``: upload (202, a worker does the rest), list, get and delete."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import anyio
from litestar import Response, delete, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, MultipartBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from core.audit import RequestAudit
from core.domain import DocumentStatus
from core.errors import DocqaError
from service.api.components import Components
from service.api.errors import problem_responses
from service.api.schemas import DocumentList, DocumentOut, UploadAccepted, UploadForm
from service.documents import clean_filename, parse_metadata


def document_url(doc_id: str) -> str:
    return f"/v1/documents/{doc_id}"


LOCATION = ResponseHeader(name="Location", documentation_only=True, required=True,
                          value="/v1/documents/{id}", description=(
    "the document's URL (`/v1/documents/{id}`): poll it, or its `/events`, until the "
    "status is ready or failed"))


@post("/documents", status_code=HTTP_202_ACCEPTED, response_headers=[LOCATION],
      response_description="Accepted: the document is queued for ingest",
      responses={HTTP_200_OK: ResponseSpec(
          UploadAccepted, generate_examples=False,
          description="The tenant already has these bytes: the existing document "
                      "(`duplicate` true), with its Location too"),
          **problem_responses(409, 413, 415, 422)})
async def upload_document(
    data: MultipartBody[UploadForm],
    tenant: NamedDependency[str],
    comps: NamedDependency[Components],
    audit: NamedDependency[RequestAudit],
) -> Response[UploadAccepted]:
    svc = comps.documents
    name = clean_filename(data.file.filename)
    try:
        metadata = parse_metadata(data.metadata)
        staged, sha256, size = await svc.stage(data.file)
        doc, created = await anyio.to_thread.run_sync(
            partial(svc.accept, tenant, staged, sha256, size, name, metadata,
                    redact_pii=data.redact_pii)
        )
    except DocqaError as exc:
        await anyio.to_thread.run_sync(partial(audit.failed, "upload", exc, **audit.text(
            "filename", name)))
        raise
    await anyio.to_thread.run_sync(partial(
        audit.record, "upload", status="accepted" if created else "duplicate",
        document_ids=[doc.id], sha256=sha256, bytes=size, redact_pii=doc.redact_pii,
        **audit.text("filename", name)))
    code = HTTP_202_ACCEPTED if created else HTTP_200_OK
    return Response(UploadAccepted(doc.id, doc.status, duplicate=not created,
                                   pii_redacted=doc.redact_pii), status_code=code,
                    headers={"Location": document_url(doc.id)})


@get("/documents", sync_to_thread=True, responses=problem_responses())
def list_documents(
    tenant: NamedDependency[str],
    comps: NamedDependency[Components],
    status: FromQuery[DocumentStatus | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    # bounded: past SQL's 64-bit integers an offset was a 500 (OverflowError); 2**53 - 1 is
    # the largest a JSON client (and the schema's float maximum) represents exactly
    offset: Annotated[int, QueryParameter(ge=0, le=2**53 - 1)] = 0,
) -> DocumentList:
    docs, total = comps.repo.list(tenant, status, limit, offset)
    return DocumentList([DocumentOut.from_domain(d) for d in docs], total, limit, offset)


@get("/documents/{doc_id:str}", sync_to_thread=True, responses=problem_responses(404))
def get_document(doc_id: FromPath[str], tenant: NamedDependency[str],
                 comps: NamedDependency[Components]) -> DocumentOut:
    return DocumentOut.from_domain(comps.documents.get(tenant, doc_id))


@delete("/documents/{doc_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True,
        responses=problem_responses(404))
def delete_document(doc_id: FromPath[str], tenant: NamedDependency[str],
                    comps: NamedDependency[Components],
                    audit: NamedDependency[RequestAudit]) -> None:
    try:
        comps.documents.delete(tenant, doc_id)
    except DocqaError as exc:
        audit.failed("delete", exc, document_ids=[doc_id[:128]])
        raise
    audit.record("delete", status="deleted", document_ids=[doc_id])


route_handlers = [upload_document, list_documents, get_document, delete_document]

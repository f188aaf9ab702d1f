"""``/v1/documents``: upload (202, a worker does the rest), list, get and delete; and reading
a document back: its extracted text around a span, and its original file."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Literal
from urllib.parse import quote

import anyio
from litestar import Request, Response, delete, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    RequestBody,
    Schema,
)
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from core.audit import RequestAudit
from core.domain import DocumentKind, DocumentStatus
from core.errors import DocqaError
from service.api.components import Components
from service.api.errors import problem_responses
from service.api.schemas import (
    DocumentCounts,
    DocumentIds,
    DocumentList,
    DocumentOut,
    DocumentStatuses,
    DocumentTextOut,
    UploadAccepted,
)
from service.api.uploads import MultipartUpload
from service.documents import MAX_TEXT_CHARS, clean_filename, parse_metadata


def document_url(doc_id: str) -> str:
    return f"/v1/documents/{doc_id}"


LOCATION = ResponseHeader(name="Location", documentation_only=True, required=True,
                          value="/v1/documents/{id}", description=(
    "the document's URL (`/v1/documents/{id}`): poll it, or its `/events`, until the "
    "status is ready or failed"))


def _upload_form_schema() -> RequestBody:
    """The form the handler reads itself (service/api/uploads.py), as Litestar described
    it when it parsed the form."""
    text_or_null = Schema(one_of=[Schema(type=OpenAPIType.STRING),
                                  Schema(type=OpenAPIType.NULL)])
    form = Schema(
        type=OpenAPIType.OBJECT, title="UploadForm", required=["file"],
        properties={
            "file": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY,
                           content_media_type="application/octet-stream"),
            "metadata": text_or_null,
            "redact_pii": Schema(type=OpenAPIType.BOOLEAN, default=False),
        })
    return RequestBody(content={"multipart/form-data": OpenAPIMediaType(schema=form)},
                       required=True)


@dataclass
class _UploadOperation(Operation):
    def __post_init__(self) -> None:
        if self.request_body is None:  # Litestar passes None: the handler has no data param
            self.request_body = _upload_form_schema()


@post("/documents", status_code=HTTP_202_ACCEPTED, response_headers=[LOCATION],
      operation_class=_UploadOperation,
      response_description="Accepted: the document is queued for ingest",
      responses={HTTP_200_OK: ResponseSpec(
          UploadAccepted, generate_examples=False,
          description="The tenant already has these bytes: the existing document "
                      "(`duplicate` true), with its Location too"),
          **problem_responses(409, 413, 415, 422)})
async def upload_document(
    request: Request[Any, Any, Any],
    tenant: NamedDependency[str],
    comps: NamedDependency[Components],
    audit: NamedDependency[RequestAudit],
) -> Response[UploadAccepted]:
    svc = comps.documents
    name = "upload"
    try:
        # streamed: no part of the file is spooled to disk before it is encrypted
        form = MultipartUpload(request.content_type, request.stream())
        await form.start_file()
        name = clean_filename(form.filename)
        staged, sha256, size = await svc.stage(form)
        try:
            await form.finish()
            metadata = parse_metadata(form.fields.get("metadata"))
            redact_pii = form.flag("redact_pii")
        except BaseException:
            await anyio.to_thread.run_sync(svc.vault.destroy, staged)
            raise
        doc, created = await anyio.to_thread.run_sync(
            partial(svc.accept, tenant, staged, sha256, size, name, metadata,
                    redact_pii=redact_pii)
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
    filename_contains: Annotated[str | None, QueryParameter(
        min_length=1, max_length=255,
        description="only documents whose filename contains this, ignoring letter case")] = None,
    order: Annotated[Literal["oldest", "newest"], QueryParameter(description=(
        "by upload time: oldest first (the default) or newest first"))] = "oldest",
) -> DocumentList:
    """One page of the caller's documents; ``total`` counts all that match the filters."""
    docs, total = comps.repo.list(tenant, status, limit, offset, name_contains=filename_contains,
                                  newest_first=order == "newest")
    return DocumentList([DocumentOut.from_domain(d) for d in docs], total, limit, offset)


@post("/documents/status", status_code=HTTP_200_OK, sync_to_thread=True,
      summary="The status of many documents at once", responses=problem_responses())
def batch_status(data: JSONBody[DocumentIds], tenant: NamedDependency[str],
                 comps: NamedDependency[Components]) -> DocumentStatuses:
    """The caller's documents among ``ids`` (at most 1,000) in one request: what a client
    waiting for many uploads asks instead of one ``GET`` per document. Ids of no document of
    the caller's (unknown, erased, another tenant's) are listed in ``missing``."""
    ids = list(dict.fromkeys(data.ids))
    found = {d.id: d for d in comps.repo.get_many(tenant, ids)}
    return DocumentStatuses([DocumentOut.from_domain(found[i]) for i in ids if i in found],
                            [i for i in ids if i not in found])


@get("/documents/counts", sync_to_thread=True, summary="How many documents per status",
     responses=problem_responses())
def document_counts(tenant: NamedDependency[str],
                    comps: NamedDependency[Components]) -> DocumentCounts:
    n = comps.repo.count_by_status(tenant)
    by = {s: n.get(s.value, 0) for s in DocumentStatus}
    return DocumentCounts(queued=by[DocumentStatus.QUEUED],
                          processing=by[DocumentStatus.PROCESSING],
                          ready=by[DocumentStatus.READY], failed=by[DocumentStatus.FAILED],
                          total=sum(n.values()))


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


MAX_OFFSET = 2**53 - 1  # the largest integer every JSON client represents exactly


@get("/documents/{doc_id:str}/text", sync_to_thread=True, responses=problem_responses(404, 409),
     summary="Extracted text around a span (a citation in context)")
def get_document_text(
    doc_id: FromPath[str],
    tenant: NamedDependency[str],
    comps: NamedDependency[Components],
    audit: NamedDependency[RequestAudit],
    start: Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET, description=(
        "first character, as in a citation's or search result's `start`"))],
    end: Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET, description=(
        "one past the last character (a citation's `end`); not before `start`"))],
    context: Annotated[int, QueryParameter(ge=0, le=MAX_TEXT_CHARS, description=(
        "characters to add on each side"))] = 0,
) -> DocumentTextOut:
    """Characters `start - context` to `end + context` of a ready document's extracted text
    (decrypted as it is read), at most 20,000 at once (400 beyond); 409 while the document
    is not ready. Gaps between passages (whitespace the chunker dropped) come back as
    spaces, or line breaks between pages."""
    got = comps.documents.text(tenant, doc_id, start, end, context)
    audit.record("document_text", status="ok", document_ids=[got.document.id],
                 start=got.start, end=got.end)
    return DocumentTextOut(got.document.id, got.document.filename, got.page, got.start, got.end,
                           got.text)


MEDIA_TYPES: dict[DocumentKind, str] = {
    DocumentKind.PDF: "application/pdf",
    DocumentKind.DOCX: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    DocumentKind.HTML: "text/html",
    DocumentKind.MARKDOWN: "text/markdown",
    DocumentKind.TEXT: "text/plain",
    DocumentKind.CSV: "text/csv",
}


def content_disposition(filename: str) -> str:
    """``attachment`` with the upload's name: an ASCII fallback and the UTF-8 name (RFC 6266)."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\%' else "_"
                       for ch in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@dataclass
class OriginalFileOperation(Operation):
    """The 200 of ``/file`` is the file itself, in its type's media type."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            binary = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
            ok.content = {t: OpenAPIMediaType(schema=binary) for t in MEDIA_TYPES.values()}
            ok.headers = {"Content-Disposition": OpenAPIHeader(
                schema=Schema(type=OpenAPIType.STRING), required=True,
                description="attachment, with the name the file was uploaded under")}


@get("/documents/{doc_id:str}/file", sync_to_thread=True, responses=problem_responses(404),
     operation_class=OriginalFileOperation, response_description="The file as uploaded",
     summary="The original file")
def get_document_file(doc_id: FromPath[str], tenant: NamedDependency[str],
                      comps: NamedDependency[Components],
                      audit: NamedDependency[RequestAudit]) -> Stream:
    """The file as it was uploaded, decrypted as it is sent. 404 once the document is
    deleted, and for a redacted document (its original is deleted after redaction)."""
    doc, blocks = comps.documents.original(tenant, doc_id)
    audit.record("document_file", status="ok", document_ids=[doc.id], bytes=doc.size)
    return Stream(blocks, headers={
        # as a header, so that no charset is added: the bytes are sent as they came
        "Content-Type": MEDIA_TYPES[doc.kind],
        "Content-Disposition": content_disposition(doc.filename),
        "Content-Length": str(doc.size),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        # an uploaded HTML page opened from here must not run on the API's origin
        "Content-Security-Policy": "sandbox",
    })


route_handlers = [upload_document, list_documents, batch_status, document_counts, get_document,
                  delete_document, get_document_text, get_document_file]

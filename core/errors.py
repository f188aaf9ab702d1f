"""docqa's own exceptions. Third-party errors are re-raised as these at the boundary.

    DocqaError
    ├── ConfigurationError        bad or missing settings (start-up)
    ├── BadInputError             400: the request cannot be understood
    │   ├── EmptyUploadError      400: zero-byte upload
    │   └── ParseError            422: a document could not be parsed (document ends `failed`;
    │                             at upload: a DOCX over the ZIP limits, ingest/limits.py)
    ├── UnsupportedMediaError     415: file type not accepted
    ├── PayloadTooLargeError      413: upload over the size limit
    ├── UnauthorizedError         401: missing or unknown API key
    ├── NotFoundError             404: no such resource for this tenant
    ├── RateLimitedError          429: this key's request limit is used up; retry later
    └── TransientError            503: a dependency is down or busy; retry later
        ├── StoreUnavailableError     vector store (Chroma server) unreachable
        ├── QueueUnavailableError     broker (Redis) unreachable
        └── OverloadedError           generation queue full
"""

from __future__ import annotations


class DocqaError(Exception):
    """Base of every docqa error; ``status_code`` is what the HTTP edge answers."""

    status_code = 500
    title = "Internal error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title


class ConfigurationError(DocqaError):
    title = "Configuration error"


class BadInputError(DocqaError):
    status_code = 400
    title = "Bad request"


class EmptyUploadError(BadInputError):
    title = "Empty upload"


class ParseError(BadInputError):
    status_code = 422
    title = "Document could not be parsed"


class UnsupportedMediaError(DocqaError):
    status_code = 415
    title = "Unsupported media type"


class PayloadTooLargeError(DocqaError):
    status_code = 413
    title = "Payload too large"


class UnauthorizedError(DocqaError):
    status_code = 401
    title = "Unauthorized"


class NotFoundError(DocqaError):
    status_code = 404
    title = "Not found"


class ConflictError(DocqaError):
    status_code = 409
    title = "Conflict"


class RateLimitedError(DocqaError):
    status_code = 429
    title = "Too many requests"

    def __init__(self, detail: str = "", retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = max(1, int(retry_after))


class TransientError(DocqaError):
    status_code = 503
    title = "Service unavailable"

    def __init__(self, detail: str = "", retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class StoreUnavailableError(TransientError):
    title = "Vector store unavailable"


class QueueUnavailableError(TransientError):
    title = "Job queue unavailable"


class OverloadedError(TransientError):
    title = "Too many questions in flight"

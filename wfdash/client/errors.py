"""What the client raises: the API's error body (`{"error": {"code", "message", "field"?}}`) as
a typed exception, by HTTP status; plus a connection failure and a wait that timed out."""

from __future__ import annotations

from typing import Any


class WfdashError(Exception):
    """An error answered by the API (or met on the way to it).

    `status` is the HTTP status (None when no answer came), `code` the API's error code
    (`not_found`, `invalid`, `forbidden`, ...), `field` the request field it names, if any.
    """

    def __init__(self, message: str, *, status: int | None = None, code: str = "error", field: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def __str__(self) -> str:
        where = f" ({self.field})" if self.field else ""
        status = f"{self.status} " if self.status is not None else ""
        return f"{status}{self.code}{where}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, field={self.field!r})"


class ValidationFailed(WfdashError):
    """400, 413 or 422: the request was refused as it is (bad input, a bad filter, too large);
    nothing was written."""


class Unauthenticated(WfdashError):
    """401: no token, or a bad or revoked one."""


class PermissionDenied(WfdashError):
    """403: the token's user lacks the permission (the message names it)."""


class NotFound(WfdashError):
    """404: no such run, checkpoint or workflow."""


class Conflict(WfdashError):
    """409: the run is in the wrong state for this (already finished, not waiting for input),
    the workflow is unavailable, or a checkpoint cannot be restored."""


class ServerError(WfdashError):
    """5xx: the server failed; the request may be retried."""


class ConnectionFailed(WfdashError, ConnectionError):
    """The server could not be reached, or the connection broke before an answer."""


class WaitTimeout(WfdashError, TimeoutError):
    """`wait()` gave up before the run reached the awaited status; `run` is its last state."""

    def __init__(self, message: str, run: Any = None):
        super().__init__(message, code="timeout")
        self.run = run


_BY_STATUS: dict[int, type[WfdashError]] = {
    400: ValidationFailed,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: ValidationFailed,
    422: ValidationFailed,
}


def error_for(status: int, body: Any, fallback: str = "") -> WfdashError:
    """The exception for an error answer: its class by status, its code, message and field
    from the body when the body is the API's error shape."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        code, message, field = error["code"], str(error.get("message", "")), error.get("field")
    else:  # not the API's shape: a proxy's page, or a route the server does not have
        code, message, field = f"http_{status}", fallback[:300] or f"HTTP {status}", None
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else WfdashError)
    return cls(message, status=status, code=code, field=field if isinstance(field, str) else None)

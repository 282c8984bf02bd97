"""One API error type, mapped to ``{"error": {"code", "message"}}`` in one place."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import structlog
from quart import Quart, Response, jsonify
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

log = structlog.get_logger(__name__)


class ApiError(Exception):
    """An error the client can act on: a status, a machine code and a message saying what to fix."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        # Such as Retry-After on 429 and 503.
        self.headers = headers or {}


class ModelNotReady(ApiError):
    """The CLIP model is still loading (start-up): 503, and the client should retry."""

    def __init__(self) -> None:
        super().__init__(503, "not_ready", "The search model is still loading; retry shortly.")


# Seconds a client should wait before retrying while the database is away (a failover or
# restart takes tens of seconds; clients that retry sooner only add load).
DATABASE_RETRY_AFTER_S = 5
_OUTAGE_ERRORS = (
    asyncpg.PostgresConnectionError,  # includes "connection does not exist" mid-query
    asyncpg.CannotConnectNowError,  # starting up, shutting down, in recovery
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


def _raised_by_driver(error: BaseException) -> bool:
    traceback = error.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_globals.get("__name__", "").startswith("asyncpg"):
            return True
        traceback = traceback.tb_next
    return False


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means PostgreSQL cannot be reached now (down, restarting, failing over).

    Socket errors and timeouts count only when the driver raised them: an OSError from a file
    or the bucket is not a database outage.
    """
    if isinstance(error, _OUTAGE_ERRORS):
        return True
    # InternalClientError: a pooled connection the server dropped mid-operation can leave the
    # driver's protocol state confused ("cannot switch to state ..."); it is the same outage.
    driver_side = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError)
    return isinstance(error, driver_side) and _raised_by_driver(error)


class DatabaseOutage:
    """One outage at a time: logged once when it starts and once when it ends, not per request."""

    def __init__(self) -> None:
        self.since: float | None = None

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, error: BaseException) -> None:
        if self.since is None:
            self.since = time.monotonic()
            log.warning(
                "database unavailable; answering 503 until it returns",
                error_type=type(error).__name__,
                error=str(error)[:200],
            )

    def answered(self, used_at: float) -> None:
        """A database round trip that began at ``used_at`` (time.monotonic()) succeeded.

        Only one that began after the outage did ends it: a request whose queries ran just
        before the crash can still finish with a 200 after the first failures were seen.
        """
        if self.since is not None and used_at >= self.since:
            log.info("database available again", outage_s=round(time.monotonic() - self.since, 1))
            self.since = None


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    response = jsonify({"error": body})
    response.status_code = status
    return response


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}


def _validation_message(error: RequestSchemaValidationError) -> tuple[str, list[dict[str, Any]]]:
    validation = error.validation_error
    problems: list[dict[str, Any]] = []
    errors = getattr(validation, "errors", None)
    if callable(errors):
        for item in errors():
            location = ".".join(str(part) for part in item.get("loc", ()))
            problems.append({"field": location, "problem": item.get("msg", "invalid")})
    if problems:
        text = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
    else:
        text = str(validation)
    return text, problems


def register_error_handlers(app: Quart, outage: DatabaseOutage | None = None) -> None:
    """Map errors to JSON; ``outage`` is told when a request failed for want of the database."""
    database = outage or DatabaseOutage()

    @app.errorhandler(ApiError)
    async def _api_error(error: ApiError) -> Response:
        response = error_response(error.status, error.code, error.message, error.details)
        response.headers.update(error.headers)
        return response

    @app.errorhandler(RequestSchemaValidationError)
    async def _schema_error(error: RequestSchemaValidationError) -> Response:
        text, problems = _validation_message(error)
        return error_response(422, "invalid_parameters", f"Invalid parameters: {text}", {"problems": problems})

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 413:
            return error_response(
                413,
                "payload_too_large",
                "The upload is larger than this server accepts; send a smaller image.",
            )
        code = _HTTP_CODES.get(status, "http_error")
        response = error_response(status, code, error.description or error.name)
        # Such as Allow on 405 (RFC 9110 section 15.5.6 requires it).
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(asyncpg.DataError)
    @app.errorhandler(asyncpg.CheckViolationError)
    async def _unstorable(error: asyncpg.PostgresError) -> Response:
        # A value validation let through that the database cannot hold or refuses (a number past
        # a column's range, say): the request's fault, and its transaction was rolled back.
        log.warning("value refused by the database", error_type=type(error).__name__, error=str(error)[:200])
        return error_response(
            422,
            "invalid_value",
            "A value in the request is outside what the catalog can store; send smaller numbers or "
            "shorter text.",
        )

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        if database_unavailable(error):
            database.failed(error)
            response = error_response(
                503,
                "database_unavailable",
                f"The catalog database is not reachable right now; retry in {DATABASE_RETRY_AFTER_S} seconds.",
            )
            response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
            return response
        # The one place a bug becomes a 500: logged with its trace, never shown to the client.
        log.exception("unhandled error", error_type=type(error).__name__)
        return error_response(500, "internal_error", "Something went wrong on our side.")

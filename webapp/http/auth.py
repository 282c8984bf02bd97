"""Bearer-token protection for catalog changes."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from pydantic import SecretStr
from quart import current_app, request
from quart_schema import document_response, security_scheme

from webapp.http.errors import ApiError
from webapp.http.schemas import ErrorOut

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

# Where the app keeps the admin token its services opened with (development fills one in), so
# this edge check needs nothing from the layers above it.
ADMIN_TOKEN = "prethrift.admin_token"


def _check_token() -> None:
    expected: SecretStr | None = current_app.extensions.get(ADMIN_TOKEN)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "unauthorized",
            "This needs the admin token: send 'Authorization: Bearer <token>'.",
        )
    if expected is None or not hmac.compare_digest(
        token.strip().encode(), expected.get_secret_value().encode()
    ):
        raise ApiError(403, "forbidden", "The admin token is not valid.")


def is_admin() -> bool:
    """For reads that show more to the admin: False without an Authorization header, True with
    the admin token, and 401/403 for any other credentials (never silently read as public)."""
    if "Authorization" not in request.headers:
        return False
    _check_token()
    return True


def require_admin(func: F) -> F:
    """401 without a bearer token, 403 with the wrong one; checked before the body is read."""

    @wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        _check_token()
        return await func(*args, **kwargs)

    # The OpenAPI document says so: /docs then offers "Authorize" for these operations.
    documented: Any = security_scheme([{"bearer": []}])(wrapper)
    documented = document_response(ErrorOut, 401)(documented)
    return document_response(ErrorOut, 403)(documented)  # type: ignore[no-any-return]

"""What shoppers do with results: click reports from the search page and the storefront widget."""

from __future__ import annotations

from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from quart import Blueprint, Response, request
from quart_schema import RequestSchemaValidationError, document_request, document_response

from webapp.analytics.repo import insert_click
from webapp.http.errors import ApiError
from webapp.http.ratelimit import rate_limited
from webapp.http.schemas import MAX_ID, NoContent, SearchId, SessionId, document_errors
from webapp.services import services

blueprint = Blueprint("analytics", __name__)

# A click report is under 200 bytes; this leaves room for spacing and nothing else.
MAX_EVENT_BYTES = 1024
# The furthest result a page can show: the last offset the API takes plus its largest page.
MAX_POSITION = 1100


class ClickEvent(BaseModel):
    """A shopper opened a result."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["click"]
    search_id: SearchId = Field(description="The search_id of the answer the result was in")
    item_id: int = Field(ge=1, le=MAX_ID)
    position: int = Field(
        ge=0, le=MAX_POSITION, description="The result's place in the answer, 0 for the first (pages continue)"
    )
    session_id: SessionId | None = Field(default=None, description="The page's anonymous per-tab id")


async def read_event(max_bytes: int) -> ClickEvent:
    """The request's event: 413 past ``max_bytes`` (reading no more than that), 400 when the body is
    not JSON, 422 when it is not an event.

    Any content type is read as JSON: a page may send ``text/plain``, which a browser sends across
    origins without asking first (no preflight request before every click).
    """
    length = request.content_length
    if length is not None and length > max_bytes:
        raise ApiError(413, "too_large", f"An event is at most {max_bytes} bytes.")
    # The app-wide limit is sized for photos. A body without a declared length stops being read
    # once past this one: Quart's body checks its own limit as data arrives.
    request.body._max_content_length = max_bytes
    body = await request.get_data(cache=True)
    if len(body) > max_bytes:
        raise ApiError(413, "too_large", f"An event is at most {max_bytes} bytes.")
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:  # bytes that are not UTF-8 included
        raise ApiError(400, "invalid_json", "The body must be a JSON object in UTF-8.") from None
    try:
        return ClickEvent.model_validate(raw)
    except ValidationError as error:
        raise RequestSchemaValidationError(error) from None


@blueprint.post("/api/events")
@rate_limited("events")
@document_request(ClickEvent)
@document_response(NoContent, 202)
@document_errors(400, 413, 422)
async def event() -> Response:
    """Report that a shopper opened a search result (for the console's click-through figures).

    Nothing about the shopper is stored: no address, no user agent; the session id is the page's
    own random per-tab id.
    """
    data = await read_event(MAX_EVENT_BYTES)
    svc = services()
    if svc.settings.analytics.enabled:
        async with svc.pool.acquire() as connection:
            await insert_click(connection, data.search_id, data.session_id, data.item_id, data.position)
    return Response(status=202)

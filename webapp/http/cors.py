"""Cross-origin access for shops that embed the search widget on their own sites.

Only the public read API answers other origins, and only those on the allow-list
(``PRETHRIFT_CORS_ORIGINS``). Everything else (uploads, edits, deletes, the admin listing,
webhooks, any route added later) is absent from ``PUBLIC_ROUTES`` and so never answers
cross-origin: no ``Access-Control-Allow-Origin``, and its preflight is refused, so a browser
never sends the request. No route allows credentials: the API reads no cookies, and the admin
token is a header a shop's page is not allowed to send (``Authorization`` is not an allowed
request header).

The suggestion socket is not covered by CORS at all (browsers open WebSockets to any origin), so
its upgrade checks the same allow-list with :func:`check_socket_origin`.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from quart import Quart, Response, current_app, request
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException

from webapp.http.errors import ApiError, error_response

EXTENSION = "cors"
# (method, URL rule): what a shop's page may call. HEAD follows GET.
PUBLIC_ROUTES = frozenset(
    {
        ("GET", "/api/search"),
        ("GET", "/api/search/stream"),
        ("POST", "/api/search/image"),
        ("GET", "/api/items/<raw_id>"),
        ("GET", "/api/items/<raw_id>/similar"),
        ("POST", "/api/events"),
    }
)
# Content-Type: JSON bodies (click events) make the browser ask first.
ALLOWED_HEADERS = "Content-Type, X-Request-ID"
# What the widget's script may read of an answer besides the CORS-safelisted headers.
EXPOSED_HEADERS = "Retry-After, X-Request-ID"
# How long a browser may reuse a preflight answer (Chromium caps it at two hours).
MAX_AGE_S = 600
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class OriginPolicy:
    """Which origins may read the public API and open the suggestion socket."""

    def __init__(self, origins: Iterable[str] | None, *, development: bool) -> None:
        self.origins = frozenset(origins or ())
        # Unset in development: a storefront on any local port (a shop's dev server) may try the widget.
        self.any_local = origins is None and development

    def allows(self, origin: str) -> bool:
        if origin in self.origins:
            return True
        if not self.any_local:
            return False
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.hostname in _LOCAL_HOSTS

    def describe(self) -> str:
        if self.any_local:
            return "any http(s)://localhost, 127.0.0.1 or [::1] origin (development default)"
        return ", ".join(sorted(self.origins)) or "none"


def _public(method: str, rule: str) -> bool:
    return ("GET" if method == "HEAD" else method, rule) in PUBLIC_ROUTES


def same_origin(origin: str, headers: Headers) -> bool:
    """Whether ``origin`` names the host the request was sent to (the service's own page).

    The scheme is not compared: behind the load balancer TLS ends before the service, which
    sees http while the page's origin says https.
    """
    host = headers.get("Host", "").lower()
    return bool(host) and urlsplit(origin).netloc.lower() == host


def _preflight(policy: OriginPolicy) -> Response | None:
    origin = request.headers.get("Origin")
    wanted = request.headers.get("Access-Control-Request-Method")
    if request.method != "OPTIONS" or origin is None or wanted is None:
        return None
    # The route the real request would reach: DELETE /api/items/1 is not GET /api/items/1.
    adapter = current_app.create_url_adapter(request)
    try:
        rule = adapter.match(method=wanted.upper(), return_rule=True)[0] if adapter is not None else None
    except HTTPException:  # no such route, or not with that method
        rule = None
    if rule is None or not _public(wanted.upper(), rule.rule) or not policy.allows(origin):
        response = error_response(
            403,
            "cross_origin_refused",
            f"{wanted[:10]} {request.path[:100]} does not answer pages from {origin[:100]}: only the public "
            "search API does, and only for origins in PRETHRIFT_CORS_ORIGINS.",
        )
    else:
        response = Response(status=204)
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = wanted.upper()
        response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = str(MAX_AGE_S)
    response.vary.add("Origin")
    return response


def _answer(policy: OriginPolicy, response: Response) -> Response:
    rule = request.url_rule
    if rule is None or request.method == "OPTIONS" or not _public(request.method, rule.rule):
        return response
    # Shared caches must not hand one shop's answer (with its ACAO) to another.
    response.vary.add("Origin")
    origin = request.headers.get("Origin")
    if origin is not None and policy.allows(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return response


def install(app: Quart, policy: OriginPolicy) -> None:
    """Answer preflights before any view runs and mark the public API's answers."""
    app.extensions[EXTENSION] = policy

    @app.before_request
    async def _cors_preflight() -> Response | None:
        return _preflight(policy)

    @app.after_request
    async def _cors_headers(response: Response) -> Response:
        return _answer(policy, response)


def check_socket_origin(headers: Headers) -> None:
    """Refuse a WebSocket upgrade from a page whose origin is neither this service nor allowed.

    Browsers always send Origin on a WebSocket handshake and let any page open a socket to any
    host, so without this a page on any site a shopper visits could hold sockets here in their
    name. A handshake without Origin comes from no browser (a script, a monitor): nobody's
    browser is being borrowed, and such clients face the same per-client caps as everyone.
    """
    origin = headers.get("Origin")
    if origin is None or same_origin(origin, headers):
        return
    policy: OriginPolicy = current_app.extensions[EXTENSION]
    if not policy.allows(origin):
        raise ApiError(
            403,
            "origin_refused",
            f"Suggestion sockets are not open to pages from {origin[:100]}; "
            "add the origin to PRETHRIFT_CORS_ORIGINS to embed the widget there.",
        )

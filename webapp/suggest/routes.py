"""WS /ws/suggest: query completions and item previews while the shopper types."""

from __future__ import annotations

from quart import Blueprint, current_app, websocket

from webapp.http.ratelimit import EXTENSION, RateLimits, client_address
from webapp.http.wsclose import FLOODED
from webapp.services import services
from webapp.suggest.session import SocketCounts, SuggestSession

blueprint = Blueprint("suggest", __name__)


@blueprint.websocket("/ws/suggest")
async def suggest() -> None:
    """Send {"q": "...", "seq": n}; receive {"seq": n, "suggestions": [...], "items": [...]}."""
    svc = services()
    limits = svc.settings.limits
    counts: SocketCounts = current_app.extensions.setdefault("suggest_sockets", SocketCounts())
    rate_limits: RateLimits = current_app.extensions[EXTENSION]
    client = client_address(websocket.headers, websocket.remote_addr, limits.trusted_proxies)
    # Past the caps the upgrade is refused with a JSON error before the socket is accepted.
    await rate_limits.check("ws_open", client)
    session = SuggestSession(svc, websocket, limits)
    try:
        with counts.hold(client, limits):
            await session.run()
    finally:
        # A flood of messages (closed by the session) or of pings (closed below the app, which
        # then sees only a disconnect): reconnecting at once would start it again, so the client
        # waits out the bar, in every task (it is kept in Redis too).
        if session.flooded or websocket.scope.get(FLOODED):
            rate_limits.bar("ws_open", client, limits.ws_flood_bar_s)

"""WS /ws/suggest: query completions and item previews while the shopper types."""

from __future__ import annotations

from quart import Blueprint, current_app, websocket

from webapp.context import services
from webapp.ratelimit import client_address
from webapp.suggest.session import SocketCounts, SuggestSession

blueprint = Blueprint("suggest", __name__)


@blueprint.websocket("/ws/suggest")
async def suggest() -> None:
    """Send {"q": "...", "seq": n}; receive {"seq": n, "suggestions": [...], "items": [...]}."""
    svc = services()
    limits = svc.settings.limits
    counts: SocketCounts = current_app.extensions.setdefault("suggest_sockets", SocketCounts())
    client = client_address(websocket.headers, websocket.remote_addr, limits.trusted_proxies)
    # Past the caps the upgrade is refused with a JSON error before the socket is accepted.
    with counts.hold(client, limits):
        await SuggestSession(svc, websocket, limits).run()

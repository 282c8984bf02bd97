"""WS /ws/suggest: query completions and item previews while the shopper types."""

from __future__ import annotations

from quart import Blueprint, websocket

from webapp.context import services
from webapp.suggest.session import SuggestSession

blueprint = Blueprint("suggest", __name__)


@blueprint.websocket("/ws/suggest")
async def suggest() -> None:
    """Send {"q": "...", "seq": n}; receive {"seq": n, "suggestions": [...], "items": [...]}."""
    await SuggestSession(services(), websocket).run()

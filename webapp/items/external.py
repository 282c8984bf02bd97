"""Removing the listing a shop knows by its own id, for callers outside a request (imports)."""

from __future__ import annotations

from webapp.items.repo import select_by_external_id
from webapp.items.service import remove_listing
from webapp.services import Services


async def delete_external(services: Services, external_id: str) -> bool:
    """Take the live item known by ``external_id`` out of the catalog; False when there is none."""
    async with services.pool.acquire() as connection:
        item = await select_by_external_id(connection, external_id)
    return item is not None and await remove_listing(services, item.id)

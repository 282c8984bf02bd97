"""Removing the listing a shop knows by its own id, for callers outside a request (imports):
the same steps as ``DELETE /api/items/external/{external_id}``."""

from __future__ import annotations

from webapp.items.repo import delete_item, select_by_external_id
from webapp.items.service import forget_photo
from webapp.services import Services


async def delete_external(services: Services, external_id: str) -> bool:
    """Take the live item known by ``external_id`` out of the catalog; False when there is none."""
    async with services.pool.acquire() as connection:
        item = await select_by_external_id(connection, external_id)
        removed = await delete_item(connection, item.id) if item is not None else None
    if removed is None:
        return False
    if services.suggester is not None:
        services.suggester.forget()
    for key in removed:
        await forget_photo(services, key)
    return True

"""Helpers for tests of items with several photos."""

from __future__ import annotations

from typing import Any

import numpy as np
from quart import Quart
from quart.datastructures import FileStorage
from quart.testing import QuartClient
from werkzeug.datastructures import Headers

from tests.webapp.conftest import image_file, listing, services_of


class Parts(list[tuple[str, FileStorage]]):
    """Several file parts under one name: Quart's test client reads ``files.items()``, and a dict
    holds one value per name."""

    def items(self) -> list[tuple[str, FileStorage]]:
        return list(self)


def image_parts(photos: list[bytes]) -> Any:
    return Parts(("image", image_file(data, f"photo{n}.jpg")) for n, data in enumerate(photos))


async def upload_photos(
    client: QuartClient, photos: list[bytes], headers: dict[str, str], **fields: str
) -> Any:
    """POST /api/items with one ``image`` part per photo, in order."""
    return await client.post(
        "/api/items",
        form=listing(**fields),
        files=image_parts(photos),
        headers=Headers(headers),
    )


async def photo_vector(app: Quart, item_id: int, photo: int) -> np.ndarray:
    """The stored vector of one photo of an item, under the served model key."""
    services = services_of(app)
    async with services.pool.acquire() as connection:
        value = await connection.fetchval(
            "SELECT embedding FROM item_embeddings WHERE item_id = $1 AND photo = $2 AND model_key = $3",
            item_id,
            photo,
            services.model_key,
        )
    assert value is not None, f"photo {photo} of item {item_id} is not embedded"
    return np.asarray(value.to_numpy(), dtype=np.float32)


async def queued_jobs(app: Quart) -> int:
    async with services_of(app).pool.acquire() as connection:
        count: int = await connection.fetchval("SELECT count(*) FROM embedding_jobs WHERE status = 'queued'")
    return count


async def object_exists(app: Quart, key: str) -> bool:
    try:
        await services_of(app).storage.get(key)
    except Exception:
        return False
    return True


def key_of(photo_out: dict[str, Any]) -> str:
    """The storage key behind a photo's URL (presigned or not)."""
    path = str(photo_out["image_url"]).split("?")[0]
    return path[path.index("/items/") + 1 :]

"""An item's photos: the rows of ``item_photos``, and the one function that changes them.

Every way of changing an item's photos (an upload, an edit, a shop's create-or-update) states
the gallery it wants as an ordered list of entries, each an existing photo (by its number) or
a new accepted image; ``write_photos`` turns the current gallery into that one inside the
caller's transaction: kept photos move, removed ones go (with their vectors and jobs), new ones
are recorded and queued for embedding under every registered model key. Position 1 is the
cover, which ``items.image_key`` mirrors for result pages.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from webapp.embedding import jobs
from webapp.embedding.images import CheckedImage
from webapp.http.errors import ApiError


@dataclass(frozen=True)
class Photo:
    item_id: int
    photo: int  # stable within the item while it holds the photo
    position: int  # 1 is the cover
    image_key: str
    image_sha256: str
    source_sha256: str | None
    status: str  # pending, ready (embedded) or failed
    failure_reason: str | None


_PHOTO_COLUMNS = "item_id, photo, position, image_key, image_sha256, source_sha256, status, failure_reason"


@dataclass(frozen=True)
class NewPhoto:
    """An accepted image to add, with the hash of the bytes as sent (to recognise them again)."""

    image: CheckedImage
    source_sha256: str


# What a gallery entry is: an existing photo's number, or a photo to add.
Entry = int | NewPhoto


@dataclass
class PhotoWrites:
    """What one change did: objects to store before the commit, and to delete after it."""

    store: list[tuple[str, CheckedImage]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    queued: int = 0
    changed: bool = False


# Advisory lock class for one item's gallery (the second key is the item id, folded to int4;
# two items sharing a fold only wait for each other). Row locks cannot serialise gallery writers
# without taking the item's row before its jobs, the reverse of the embedding worker's order.
_GALLERY_LOCK = 0x70686F74


async def lock_gallery(connection: asyncpg.Connection, item_id: int) -> None:
    """Serialise changes to one item's photos until the transaction ends."""
    await connection.execute("SELECT pg_advisory_xact_lock($1, $2)", _GALLERY_LOCK, item_id % 2_147_483_647)


def image_key_for(image: CheckedImage) -> str:
    # A key of its own for each accepted photo: the object belongs to the one row that records
    # it, so deleting it when that row does not commit never takes another item's photo
    # (identical photos share a hash, never a key).
    return f"items/{image.sha256[:2]}/{image.sha256}-{secrets.token_hex(6)}.{image.extension}"


async def select_photos(connection: asyncpg.Connection, item_ids: Sequence[int]) -> dict[int, list[Photo]]:
    """The photos of these items, in gallery order (one query for a whole page of items)."""
    rows = await connection.fetch(
        f"""SELECT {_PHOTO_COLUMNS} FROM item_photos WHERE item_id = ANY($1::bigint[])
            ORDER BY item_id, position""",
        list(item_ids),
    )
    found: dict[int, list[Photo]] = {item_id: [] for item_id in item_ids}
    for row in rows:
        found[row["item_id"]].append(Photo(**dict(row)))
    return found


async def owner_of(connection: asyncpg.Connection, sha256s: Sequence[str], *, besides: int = 0) -> int | None:
    """A live item other than ``besides`` that already has one of these photos, or None."""
    owner: int | None = await connection.fetchval(
        "SELECT item_id FROM item_photos WHERE image_sha256 = ANY($1::text[]) AND item_id <> $2 LIMIT 1",
        list(sha256s),
        besides,
    )
    return owner


def duplicate_photo(existing: int | None) -> ApiError:
    return ApiError(
        409,
        "duplicate_image",
        f"This photo is already listed as item {existing}; upload a different photo.",
        {"existing_id": existing},
    )


def _resolve(current: list[Photo], entries: Sequence[Entry]) -> list[int | NewPhoto]:
    """Entries as existing photo numbers where they are one (a new image with the same bytes as a
    photo the item has is that photo: nothing to store or embed again)."""
    numbers = {p.photo for p in current}
    by_hash: dict[str, int] = {}
    for p in current:
        by_hash[p.image_sha256] = p.photo
        if p.source_sha256 is not None:
            by_hash[p.source_sha256] = p.photo
    resolved: list[int | NewPhoto] = []
    for entry in entries:
        if isinstance(entry, NewPhoto):
            known = by_hash.get(entry.image.sha256, by_hash.get(entry.source_sha256))
            resolved.append(known if known is not None else entry)
        elif entry in numbers:
            resolved.append(entry)
        else:
            raise ApiError(
                422, "unknown_photo", f"The item has no photo {entry}; list the ids its photos have now."
            )
    kept = [e for e in resolved if isinstance(e, int)]
    if len(kept) != len(set(kept)):
        raise ApiError(422, "repeated_photo", "The same photo is listed twice; list each photo once.")
    hashes = [e.image.sha256 for e in resolved if isinstance(e, NewPhoto)]
    if len(hashes) != len(set(hashes)):
        raise ApiError(422, "repeated_photo", "The same photo was sent twice; send each photo once.")
    return resolved


async def write_photos(
    connection: asyncpg.Connection,
    item_id: int,
    entries: Sequence[Entry],
    model_key: str,
    writes: PhotoWrites | None = None,
) -> PhotoWrites:
    """Make the item's gallery ``entries``, in order, recording what to store and delete in
    ``writes``; call inside a transaction, before anything there locks the item's row (the
    worker's lock order). Nothing changes and nothing is queued when the gallery is already that.

    Raises ApiError 404 for no live item, asyncpg.UniqueViolationError when another live item
    has one of the new photos.
    """
    if not entries:
        raise ApiError(422, "no_photos", "An item needs at least one photo.")
    await lock_gallery(connection, item_id)
    # Deleting an item takes the same lock: after it, a live item stays live until we commit.
    status = await connection.fetchval("SELECT status FROM items WHERE id = $1", item_id)
    if status is None or status == "deleted":
        raise ApiError(404, "not_found", f"There is no item {item_id}.")
    rows = await connection.fetch(
        f"SELECT {_PHOTO_COLUMNS} FROM item_photos WHERE item_id = $1 ORDER BY position", item_id
    )
    current = [Photo(**dict(r)) for r in rows]
    resolved = _resolve(current, entries)
    writes = writes if writes is not None else PhotoWrites()
    if resolved == [p.photo for p in current]:
        return writes
    writes.changed = True
    kept = {e for e in resolved if isinstance(e, int)}
    removed = [p for p in current if p.photo not in kept]
    if removed:
        # Their jobs first, as a worker takes its locks (jobs, then photos, then the item): one
        # committing them finishes before we go on, and no lock order runs the other way.
        await jobs.delete_for_photos(connection, item_id, [p.photo for p in removed])
        await connection.execute(
            "DELETE FROM item_photos WHERE item_id = $1 AND photo = ANY($2::integer[])",
            item_id,
            [p.photo for p in removed],
        )
        writes.removed.extend(p.image_key for p in removed)
    next_number = max((p.photo for p in current), default=0) + 1
    moved: list[tuple[int, int]] = []
    added: list[tuple[int, int, str, NewPhoto]] = []
    for position, entry in enumerate(resolved, start=1):
        if isinstance(entry, int):
            moved.append((entry, position))
        else:
            added.append((next_number, position, image_key_for(entry.image), entry))
            next_number += 1
    if moved:
        await connection.execute(
            """UPDATE item_photos p SET position = m.position
               FROM unnest($2::integer[], $3::integer[]) AS m(photo, position)
               WHERE p.item_id = $1 AND p.photo = m.photo AND p.position <> m.position""",
            item_id,
            [m[0] for m in moved],
            [m[1] for m in moved],
        )
    if added:
        await connection.executemany(
            """INSERT INTO item_photos (item_id, photo, position, image_key, image_sha256, source_sha256)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            [
                (item_id, number, position, key, new.image.sha256, _if_differs(new))
                for number, position, key, new in added
            ],
        )
        await jobs.queue_photos(connection, item_id, [a[0] for a in added], model_key)
        writes.store.extend((key, new.image) for _, _, key, new in added)
        writes.queued += len(added)
    await _mirror_cover(connection, item_id)
    return writes


def _if_differs(new: NewPhoto) -> str | None:
    return new.source_sha256 if new.source_sha256 != new.image.sha256 else None


async def _mirror_cover(connection: asyncpg.Connection, item_id: int) -> None:
    """Copy the cover onto the item; an item not yet searchable follows its (new) cover's state.

    A searchable item stays so while a new cover is embedded: its other photos still find it.
    """
    await connection.execute(
        """UPDATE items i
           SET image_key = p.image_key, image_sha256 = p.image_sha256, updated_at = now(),
               status = CASE WHEN i.status NOT IN ('pending', 'failed') THEN i.status
                             WHEN p.status = 'ready' THEN 'ready'
                             WHEN p.status = 'failed' THEN 'failed'
                             ELSE 'pending' END,
               failure_reason = CASE WHEN i.status IN ('pending', 'failed') THEN p.failure_reason
                                     ELSE i.failure_reason END
           FROM item_photos p
           WHERE i.id = $1 AND p.item_id = i.id AND p.position = 1""",
        item_id,
    )


async def photo_keys(connection: asyncpg.Connection, item_id: int) -> list[str]:
    rows = await connection.fetch("SELECT image_key FROM item_photos WHERE item_id = $1", item_id)
    return [r["image_key"] for r in rows]

-- Several photos per item, and the shop's own id for it.
--
-- A photo is a row of item_photos: `photo` numbers it within its item (stable while the item
-- holds it; jobs and vectors point at it), `position` orders the gallery (1 is the cover, shown
-- in results). items.image_key and items.image_sha256 keep mirroring the cover, so that every
-- result page still reads one row per item.
--
-- Each existing item's photo becomes its photo 1 where it already is: item_embeddings and
-- embedding_jobs gain a `photo` column whose constant default makes it photo 1 without
-- rewriting a row, so no vector is re-embedded, no HNSW graph is rebuilt, and the whole change
-- commits at once (migrations run in one transaction each): search reads the old shape until
-- the commit and the new one after it, never an empty catalog.

CREATE TABLE item_photos (
    item_id        bigint NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    photo          integer NOT NULL CHECK (photo >= 1),
    position       integer NOT NULL CHECK (position >= 1),
    image_key      text NOT NULL,
    image_sha256   text NOT NULL,
    -- The bytes as the seller sent them (metadata included), when they differ from what was
    -- stored: a shop sending the same file again is recognised without decoding it again.
    source_sha256  text,
    status         text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ready', 'failed')),
    failure_reason text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (item_id, photo),
    -- Deferred: a reorder moves several positions in one transaction.
    CONSTRAINT item_photos_position UNIQUE (item_id, position) DEFERRABLE INITIALLY DEFERRED
);
-- The same photo twice is the same listing twice. Photo rows exist only for live items (a
-- deleted item's rows go with it), so the index needs no predicate.
CREATE UNIQUE INDEX item_photos_sha256 ON item_photos (image_sha256);

INSERT INTO item_photos (item_id, photo, position, image_key, image_sha256, status, failure_reason)
SELECT i.id, 1, 1, i.image_key, i.image_sha256,
       CASE WHEN EXISTS (SELECT 1 FROM item_embeddings e WHERE e.item_id = i.id) THEN 'ready'
            WHEN i.status = 'failed' THEN 'failed'
            WHEN EXISTS (SELECT 1 FROM embedding_jobs j WHERE j.item_id = i.id AND j.status = 'failed')
                THEN 'failed'
            ELSE 'pending' END,
       CASE WHEN NOT EXISTS (SELECT 1 FROM item_embeddings e WHERE e.item_id = i.id) THEN i.failure_reason END
FROM items i WHERE i.status <> 'deleted';

DROP INDEX items_image_sha256_live;

-- Rows of deleted items (none are kept by the service) would have no photo to point at.
DELETE FROM item_embeddings e WHERE NOT EXISTS (SELECT 1 FROM item_photos p WHERE p.item_id = e.item_id);
DELETE FROM embedding_jobs j WHERE NOT EXISTS (SELECT 1 FROM item_photos p WHERE p.item_id = j.item_id);

ALTER TABLE item_embeddings ADD COLUMN photo integer NOT NULL DEFAULT 1;
ALTER TABLE item_embeddings DROP CONSTRAINT item_embeddings_pkey;
ALTER TABLE item_embeddings ADD PRIMARY KEY (item_id, photo, model_key);
ALTER TABLE item_embeddings ADD CONSTRAINT item_embeddings_photo
    FOREIGN KEY (item_id, photo) REFERENCES item_photos (item_id, photo) ON DELETE CASCADE;

ALTER TABLE embedding_jobs ADD COLUMN photo integer NOT NULL DEFAULT 1;
ALTER TABLE embedding_jobs DROP CONSTRAINT embedding_jobs_item_id_model_key_key;
ALTER TABLE embedding_jobs ADD CONSTRAINT embedding_jobs_photo_key UNIQUE (item_id, photo, model_key);
ALTER TABLE embedding_jobs ADD CONSTRAINT embedding_jobs_photo
    FOREIGN KEY (item_id, photo) REFERENCES item_photos (item_id, photo) ON DELETE CASCADE;

-- The shop's own id for a listing (a Shopify handle, a SKU, a marketplace listing id): opaque,
-- optional, unique among live items. The character set is URL-path safe, so that it can be
-- addressed as /api/items/external/<id> as written (webapp.http.schemas.ExternalId).
ALTER TABLE items ADD COLUMN external_id text
    CHECK (external_id ~ '^[A-Za-z0-9][A-Za-z0-9._~:@-]{0,127}$');
CREATE UNIQUE INDEX items_external_id_live ON items (external_id)
    WHERE status <> 'deleted' AND external_id IS NOT NULL;

-- An item row written with its photo (a bulk load that copies items and their vectors in, as the
-- benchmarks do) has that photo as its cover; the service writes items with an empty key and
-- records their photos itself. Statement-level: a COPY of many items makes one insert here.
CREATE FUNCTION items_cover_photo() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO item_photos (item_id, photo, position, image_key, image_sha256, status, failure_reason)
    SELECT id, 1, 1, image_key, image_sha256,
           CASE status WHEN 'pending' THEN 'pending' WHEN 'failed' THEN 'failed' ELSE 'ready' END,
           failure_reason
    FROM added WHERE image_key <> '' AND status <> 'deleted';
    RETURN NULL;
END
$$;

CREATE TRIGGER items_cover_photo AFTER INSERT ON items
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION items_cover_photo();

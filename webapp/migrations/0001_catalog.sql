-- The catalog, its embeddings (one row per item and model) and the durable embedding queue.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE items (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title          text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description    text NOT NULL DEFAULT '',
    brand          text,
    category       text,
    size           text,
    colour         text,
    condition      text,
    price          numeric(12, 2) NOT NULL CHECK (price >= 0),
    currency       char(3) NOT NULL DEFAULT 'USD',
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'ready', 'failed', 'deleted')),
    failure_reason text,
    image_key      text NOT NULL,
    image_sha256   text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- The same photo twice is the same listing twice; a deleted item frees its photo.
CREATE UNIQUE INDEX items_image_sha256_live ON items (image_sha256) WHERE status <> 'deleted';
CREATE INDEX items_created_at ON items (created_at DESC);

-- Dimension-free column so that a new model (another width) can be embedded beside the old
-- one; each model gets a partial HNSW index on a cast expression (see webapp/adapters/db.py).
CREATE TABLE item_embeddings (
    item_id    bigint NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    model_key  text NOT NULL,
    embedding  vector NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (item_id, model_key)
);

CREATE TABLE embedding_jobs (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item_id    bigint NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    model_key  text NOT NULL,
    status     text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'done', 'failed')),
    attempts   integer NOT NULL DEFAULT 0,
    run_after  timestamptz NOT NULL DEFAULT now(),
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (item_id, model_key)
);
CREATE INDEX embedding_jobs_queued ON embedding_jobs (model_key, run_after) WHERE status = 'queued';

-- Bumped whenever search results can change; result caches are keyed by it.
CREATE TABLE catalog_state (
    id      integer PRIMARY KEY CHECK (id = 1),
    version bigint NOT NULL
);
INSERT INTO catalog_state (id, version) VALUES (1, 0);

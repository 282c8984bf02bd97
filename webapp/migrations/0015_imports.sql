-- Catalog imports: what was fetched, what each imported listing was loaded from, webhook
-- deliveries already applied, and the durable queue of imports a webhook asked for.

-- A photo source (URL, s3:// object) fetched before: the content's hash and the validators to
-- ask the source again with, so a re-run downloads only what changed or failed.
CREATE TABLE import_sources (
    source text PRIMARY KEY,
    sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    etag text,
    last_modified text,
    fetched_at timestamptz NOT NULL DEFAULT now()
);

-- What each listing loaded by an import was last loaded from: a hash of its fields and photo
-- sources (a row whose hash has not changed is not fetched or stored again), where it came
-- from (a catalog file's name, or 'shopify' for webhooks), and Shopify's product id, because
-- Shopify's products/delete payload carries only that id, not the handle. source_updated_at is
-- the product's updated_at in the newest webhook taken: Shopify does not promise delivery order,
-- so an older update arriving late is not applied over a newer one.
CREATE TABLE import_listings (
    external_id text PRIMARY KEY,
    origin text NOT NULL,
    fingerprint text NOT NULL,
    shopify_product_id bigint UNIQUE,
    source_updated_at timestamptz,
    loaded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX import_listings_origin ON import_listings (origin);

-- Webhook deliveries applied, by the sender's delivery id, kept until expires_at: the same
-- delivery sent again (a retry, or a replay of a captured request) changes nothing.
CREATE TABLE webhook_deliveries (
    sender text NOT NULL,
    delivery_id text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (sender, delivery_id)
);
CREATE INDEX webhook_deliveries_expiry ON webhook_deliveries (expires_at);

-- Imports a webhook asked for, applied by the embedding worker's import loop: the request only
-- records one row, the photos are fetched here. One row per listing: a newer delivery replaces
-- the payload of one not yet applied (version tells a worker holding the old one not to
-- delete the new one).
CREATE TABLE import_jobs (
    external_id text PRIMARY KEY,
    action text NOT NULL CHECK (action IN ('upsert', 'delete')),
    payload jsonb NOT NULL,
    version integer NOT NULL DEFAULT 1,
    attempts integer NOT NULL DEFAULT 0,
    not_before timestamptz NOT NULL DEFAULT now(),
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX import_jobs_due ON import_jobs (not_before);

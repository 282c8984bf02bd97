-- The metrics store (webapp/observability/metrics_store.py): per-minute rows that every replica adds to in
-- batches, read by the ops console. Latency is kept as counts over fixed bucket bounds
-- (metrics_store.LATENCY_BOUNDS_MS), so minutes and replicas merge by adding counts and
-- percentiles stay right after merging. Rows older than the retention period are deleted.

CREATE TABLE metrics_requests (
    minute   timestamptz NOT NULL,
    route    text NOT NULL,
    replica  text NOT NULL,
    requests bigint NOT NULL,
    errors   bigint NOT NULL,            -- answered 5xx
    rejected bigint NOT NULL,            -- answered 4xx
    total_ms double precision NOT NULL,
    max_ms   double precision NOT NULL,
    buckets  bigint[] NOT NULL,          -- one count per bound, then one for slower requests
    PRIMARY KEY (minute, route, replica)
);

CREATE TABLE metrics_cache (
    minute  timestamptz NOT NULL,
    cache   text NOT NULL,
    replica text NOT NULL,
    hits    bigint NOT NULL,
    misses  bigint NOT NULL,
    PRIMARY KEY (minute, cache, replica)
);

CREATE TABLE metrics_ingest (
    minute      timestamptz NOT NULL,
    replica     text NOT NULL,
    embedded    bigint NOT NULL,
    retried     bigint NOT NULL,
    failed      bigint NOT NULL,
    queue_depth integer,                 -- the largest depth seen in the minute; NULL if not measured
    PRIMARY KEY (minute, replica)
);

-- Element-wise sum of two histograms (the upsert when one replica flushes twice in a minute).
CREATE FUNCTION metrics_add_buckets(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(coalesce(x, 0) + coalesce(y, 0) ORDER BY i)
    FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i)
$$;

-- metrics_sum_buckets(buckets): the merged histogram of a group of rows.
CREATE AGGREGATE metrics_sum_buckets(bigint[]) (SFUNC = metrics_add_buckets, STYPE = bigint[]);

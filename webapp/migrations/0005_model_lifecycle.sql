-- Model keys with a lifecycle (webapp/embedding/jobs.py): a registry of the keys every upload is queued
-- for, heartbeats that say which key each API and worker serves, and job leases so that a
-- worker dying mid-batch still counts as an attempt.

CREATE TABLE embedding_models (
    model_key     text PRIMARY KEY,
    registered_at timestamptz NOT NULL DEFAULT now(),
    retired_at    timestamptz
);
-- Keys already in use before the registry existed stay in use.
INSERT INTO embedding_models (model_key)
    SELECT model_key FROM embedding_jobs UNION SELECT model_key FROM item_embeddings
    ON CONFLICT DO NOTHING;

-- Each process refreshes its row every few seconds and deletes it on a clean exit; a row that
-- stopped being refreshed belongs to a process that died.
CREATE TABLE model_heartbeats (
    replica   text NOT NULL,
    role      text NOT NULL CHECK (role IN ('api', 'worker')),
    model_key text NOT NULL,
    seen_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (replica, role)
);

-- A claim commits the attempt and a lease (run_after moves to the lease's end) before any work;
-- the commit of the results only applies to jobs still holding that lease.
ALTER TABLE embedding_jobs ADD COLUMN lease uuid;

-- Backfill rate per key (console) reads recent embeddings.
CREATE INDEX item_embeddings_model_created ON item_embeddings (model_key, created_at);

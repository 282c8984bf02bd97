-- Suggestions one client cannot steer: a query is suggested only once enough different clients
-- ran it, it is forgotten when nobody has for a while, and an operator can remove one for good.

-- How many different clients ran each query within the retention (webapp.suggest.repo keeps it
-- in step with search_query_clients). Queries learned before this counted every search alike,
-- so one client could have put them there: they start at none and are suggested again once
-- enough clients run them.
ALTER TABLE search_queries ADD COLUMN clients integer NOT NULL DEFAULT 0;
CREATE INDEX search_queries_last_seen ON search_queries (last_seen);

-- Who ran a query, as a keyed hash of the client's address (never the address itself), and when
-- last; rows older than the retention are deleted.
CREATE TABLE search_query_clients (
    query     text NOT NULL REFERENCES search_queries (query) ON DELETE CASCADE,
    client    bytea NOT NULL CHECK (length(client) = 16),
    last_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (query, client)
);
CREATE INDEX search_query_clients_last_seen ON search_query_clients (last_seen);

-- The key of that hash, made here once and shared by every process, so that a client is one
-- client whichever task answers it. gen_random_uuid draws from the server's strong random source.
CREATE TABLE suggestion_key (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    secret   bytea NOT NULL CHECK (length(secret) >= 16)
);
INSERT INTO suggestion_key (secret)
VALUES (decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));

-- Queries an operator removed (`prethrift suggestions remove`): never learned or suggested again.
CREATE TABLE suggestion_blocks (
    query      text PRIMARY KEY CHECK (length(query) BETWEEN 1 AND 100),
    blocked_at timestamptz NOT NULL DEFAULT now()
);

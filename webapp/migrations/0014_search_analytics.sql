-- What shoppers search for and what they pick, for the console's Demand page
-- (webapp/analytics). Raw rows are kept for PRETHRIFT_ANALYTICS_RAW_RETENTION_DAYS, the daily
-- rollups for PRETHRIFT_ANALYTICS_ROLLUP_RETENTION_DAYS; the worker deletes what has expired.
-- Nothing here names a shopper: no address, no user agent, no photo; the session is a random
-- per-tab id the page makes up.

CREATE TABLE search_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,
    search_id   text NOT NULL CHECK (length(search_id) <= 64),
    session_id  text CHECK (length(session_id) <= 64),
    -- text, browse (filters only) or photo
    kind        text NOT NULL CHECK (kind IN ('text', 'browse', 'photo')),
    mode        text NOT NULL,
    -- The query as normalised for search (empty for browse and photo), and the words left once
    -- constraints were read out of it.
    query       text NOT NULL DEFAULT '' CHECK (length(query) <= 300),
    terms       text NOT NULL DEFAULT '' CHECK (length(terms) <= 300),
    -- Filters given as parameters, and those read out of the query, kept apart.
    given       jsonb NOT NULL DEFAULT '{}',
    parsed      jsonb NOT NULL DEFAULT '{}',
    page_offset integer NOT NULL DEFAULT 0,
    results     integer NOT NULL,
    cached      boolean NOT NULL,
    latency_ms  real NOT NULL
);
CREATE INDEX search_events_at ON search_events (at);
CREATE INDEX search_events_search_id ON search_events (search_id);

CREATE TABLE search_clicks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    search_id   text NOT NULL CHECK (length(search_id) <= 64),
    session_id  text CHECK (length(session_id) <= 64),
    item_id     bigint NOT NULL,
    position    integer NOT NULL CHECK (position >= 0)
);
CREATE INDEX search_clicks_at ON search_clicks (at);
CREATE INDEX search_clicks_search_id ON search_clicks (search_id);

-- One row per day and distinct search (what was typed, what it was read as): first pages only,
-- so paging through results does not count as searching again.
CREATE TABLE search_daily (
    day              date NOT NULL,
    kind             text NOT NULL,
    query            text NOT NULL,
    terms            text NOT NULL,
    -- The filters the search ran with: given ones over those read from the query.
    filters          jsonb NOT NULL,
    searches         integer NOT NULL,
    no_results       integer NOT NULL,
    few_results      integer NOT NULL,
    most_results     integer NOT NULL,
    clicked_searches integer NOT NULL,
    clicks           integer NOT NULL,
    position_sum     bigint NOT NULL,
    PRIMARY KEY (day, kind, query, terms, filters)
);

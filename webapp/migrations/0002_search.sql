-- Keyword search, filters and learned query suggestions.

-- Brand and title weigh most; 'simple' keeps brand names and model numbers ("501") as typed,
-- 'english' stems the words of titles and descriptions.
ALTER TABLE items ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple', coalesce(brand, '')), 'A') ||
    setweight(to_tsvector('simple', title), 'A') ||
    setweight(to_tsvector('english', title), 'A') ||
    setweight(to_tsvector('english', coalesce(category, '') || ' ' || coalesce(colour, '')), 'B') ||
    setweight(to_tsvector('english', description), 'C')
) STORED;
CREATE INDEX items_search_tsv ON items USING gin (search_tsv);

-- Facets match case-insensitively.
CREATE INDEX items_category ON items (lower(category)) WHERE status = 'ready';
CREATE INDEX items_size ON items (lower(size)) WHERE status = 'ready';
CREATE INDEX items_colour ON items (lower(colour)) WHERE status = 'ready';
CREATE INDEX items_brand ON items (lower(brand)) WHERE status = 'ready';
CREATE INDEX items_condition ON items (condition) WHERE status = 'ready';
CREATE INDEX items_price ON items (price, id) WHERE status = 'ready';
CREATE INDEX items_ready_newest ON items (created_at DESC, id DESC) WHERE status = 'ready';

-- Queries shoppers actually ran, for suggestions ranked by popularity.
CREATE TABLE search_queries (
    query     text PRIMARY KEY CHECK (length(query) BETWEEN 1 AND 100),
    count     bigint NOT NULL DEFAULT 0,
    last_seen timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX search_queries_prefix ON search_queries (query text_pattern_ops);

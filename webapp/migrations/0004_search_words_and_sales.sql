-- The catalog's own vocabulary, for correcting typos in keyword search ("jaket" -> "jacket"),
-- with how many items were written with each word: when not every word of a query matches,
-- the most common words are let go first (Meilisearch's "frequency" matching strategy).
-- Counts only grow (items written, words added by an edit); a word no live item holds any
-- more only offers a correction that matches nothing.
CREATE TABLE search_words (
    word  text PRIMARY KEY CHECK (length(word) BETWEEN 1 AND 60),
    items bigint NOT NULL DEFAULT 0
);

CREATE FUNCTION item_words(brand text, title text, category text, colour text, description text)
RETURNS SETOF text LANGUAGE sql IMMUTABLE AS $$
    SELECT DISTINCT w FROM unnest(tsvector_to_array(to_tsvector('simple',
        coalesce(brand, '') || ' ' || title || ' ' || coalesce(category, '') || ' ' ||
        coalesce(colour, '') || ' ' || description))) AS w
    WHERE length(w) BETWEEN 2 AND 60 AND w !~ '^[0-9]+$'
$$;

-- Statement-level, over the transition tables: a COPY or a multi-row insert of many items
-- makes one upsert per word, not one per word per item.
CREATE FUNCTION items_count_new_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_words AS s (word, items)
    SELECT w, count(*) FROM added, item_words(added.brand, added.title, added.category, added.colour,
                                              added.description) AS w
    GROUP BY w
    ON CONFLICT (word) DO UPDATE SET items = s.items + EXCLUDED.items;
    RETURN NULL;
END
$$;

CREATE FUNCTION items_count_changed_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Only words an edit brought in; status changes (the worker's) bring none.
    INSERT INTO search_words AS s (word, items)
    SELECT w, count(*)
    FROM changed JOIN previous USING (id),
         item_words(changed.brand, changed.title, changed.category, changed.colour, changed.description) AS w
    WHERE (changed.brand, changed.title, changed.category, changed.colour, changed.description)
          IS DISTINCT FROM (previous.brand, previous.title, previous.category, previous.colour, previous.description)
      AND w NOT IN (SELECT item_words(previous.brand, previous.title, previous.category, previous.colour,
                                      previous.description))
    GROUP BY w
    ON CONFLICT (word) DO UPDATE SET items = s.items + EXCLUDED.items;
    RETURN NULL;
END
$$;

CREATE TRIGGER items_new_words AFTER INSERT ON items
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION items_count_new_words();
CREATE TRIGGER items_changed_words AFTER UPDATE ON items
    REFERENCING OLD TABLE AS previous NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION items_count_changed_words();

INSERT INTO search_words (word, items)
SELECT w, count(*) FROM items, item_words(brand, title, category, colour, description) AS w
GROUP BY w;

-- Every second-hand item is unique and sells once: a listing can be held for a buyer
-- (reserved) or sold. Both leave search at once (search reads only 'ready' items); making it
-- available again returns it to 'ready'. The embedding worker only promotes pending or failed
-- items, so a sold item stays sold while a changed photo is re-embedded.
ALTER TABLE items DROP CONSTRAINT items_status_check;
ALTER TABLE items ADD CONSTRAINT items_status_check
    CHECK (status IN ('pending', 'ready', 'failed', 'reserved', 'sold', 'deleted'));
CREATE INDEX items_listing ON items (id DESC) WHERE status <> 'deleted';

-- Facet counts read these columns for every item that passes the filters; covering them lets
-- a category filter (the commonest) and the unfiltered category counts be index-only scans
-- instead of one heap page per item.
CREATE INDEX items_facets ON items (lower(category)) INCLUDE (category, size, brand, colour, condition, price)
    WHERE status = 'ready';

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

CREATE FUNCTION items_add_search_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_words AS s (word, items)
    SELECT w, 1 FROM item_words(NEW.brand, NEW.title, NEW.category, NEW.colour, NEW.description) AS w
    WHERE TG_OP = 'INSERT'
       OR w NOT IN (SELECT item_words(OLD.brand, OLD.title, OLD.category, OLD.colour, OLD.description))
    ON CONFLICT (word) DO UPDATE SET items = s.items + 1;
    RETURN NEW;
END
$$;

CREATE TRIGGER items_search_words
    AFTER INSERT OR UPDATE OF brand, title, category, colour, description ON items
    FOR EACH ROW EXECUTE FUNCTION items_add_search_words();

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

-- The catalog's own vocabulary, for correcting typos in keyword search ("jaket" -> "jacket").
-- Words are added as items are written and never removed: a word no live item holds any more
-- only offers a correction that matches nothing.
CREATE TABLE search_words (
    word text PRIMARY KEY CHECK (length(word) BETWEEN 1 AND 60)
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
    INSERT INTO search_words (word)
    SELECT w FROM item_words(NEW.brand, NEW.title, NEW.category, NEW.colour, NEW.description) AS w
    ON CONFLICT DO NOTHING;
    RETURN NEW;
END
$$;

CREATE TRIGGER items_search_words
    AFTER INSERT OR UPDATE OF brand, title, category, colour, description ON items
    FOR EACH ROW EXECUTE FUNCTION items_add_search_words();

INSERT INTO search_words (word)
SELECT DISTINCT w FROM items, item_words(brand, title, category, colour, description) AS w
ON CONFLICT DO NOTHING;

-- Every second-hand item is unique and sells once: a listing can be held for a buyer
-- (reserved) or sold. Both leave search at once (search reads only 'ready' items); making it
-- available again returns it to 'ready'. The embedding worker only promotes pending or failed
-- items, so a sold item stays sold while a changed photo is re-embedded.
ALTER TABLE items DROP CONSTRAINT items_status_check;
ALTER TABLE items ADD CONSTRAINT items_status_check
    CHECK (status IN ('pending', 'ready', 'failed', 'reserved', 'sold', 'deleted'));
CREATE INDEX items_listing ON items (id DESC) WHERE status <> 'deleted';

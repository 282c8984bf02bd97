-- How many searchable items hold each facet value across the whole catalog, kept as items
-- change. Facet counts need them whenever a field is counted under no other filter (browsing
-- with one filter counts that field over the whole catalog, so that its other values still
-- show), and counting them from the items reads every searchable item.
--
-- Append-only: each statement on items adds the net change it made, one row per value it moved,
-- and readers sum. No row is ever updated, so writers never wait on one another's counts (a
-- counter row per value would make every upload and import queue behind the others' commits,
-- and deadlock two that touch the same values in opposite orders). The worker's upkeep folds
-- the rows into one per value now and then (webapp.search.facets.compact_tallies).
CREATE TABLE facet_tallies (
    field text NOT NULL,
    value text NOT NULL,
    items bigint NOT NULL
);
CREATE INDEX facet_tallies_field ON facet_tallies (field);

-- The facet values one item counts under while it is searchable: its fields as written (facet
-- counts merge spellings), and the number of its price bucket. The edges are
-- webapp.search.facets.PRICE_EDGES; a test holds the two equal.
CREATE FUNCTION facet_values(status text, category text, size text, brand text, colour text,
                             condition text, price numeric)
RETURNS TABLE (field text, value text) LANGUAGE sql IMMUTABLE AS $$
    SELECT t.f, t.v FROM (VALUES
        ('category', category), ('size', size), ('brand', brand), ('colour', colour),
        ('condition', condition),
        ('price', width_bucket(price, ARRAY[20, 40, 60, 100, 200]::numeric[])::text)
    ) AS t(f, v)
    WHERE status = 'ready' AND t.v IS NOT NULL
$$;

-- Statement-level, over the transition tables: a COPY or a multi-row insert of many items adds
-- one row per value, and an update that moves nothing (a title edit) adds none.
CREATE FUNCTION items_tally_facets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO facet_tallies (field, value, items)
        SELECT v.field, v.value, count(*) FROM added,
               facet_values(added.status, added.category, added.size, added.brand, added.colour,
                            added.condition, added.price) AS v
        GROUP BY v.field, v.value;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO facet_tallies (field, value, items)
        SELECT field, value, sum(n) FROM (
            SELECT v.field, v.value, 1 AS n FROM changed,
                   facet_values(changed.status, changed.category, changed.size, changed.brand,
                                changed.colour, changed.condition, changed.price) AS v
            UNION ALL
            SELECT v.field, v.value, -1 FROM previous,
                   facet_values(previous.status, previous.category, previous.size, previous.brand,
                                previous.colour, previous.condition, previous.price) AS v
        ) moved
        GROUP BY field, value HAVING sum(n) <> 0;
    ELSE
        INSERT INTO facet_tallies (field, value, items)
        SELECT v.field, v.value, -count(*) FROM removed,
               facet_values(removed.status, removed.category, removed.size, removed.brand,
                            removed.colour, removed.condition, removed.price) AS v
        GROUP BY v.field, v.value;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER items_tally_added AFTER INSERT ON items
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION items_tally_facets();
CREATE TRIGGER items_tally_changed AFTER UPDATE ON items
    REFERENCING OLD TABLE AS previous NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION items_tally_facets();
CREATE TRIGGER items_tally_removed AFTER DELETE ON items
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION items_tally_facets();

-- TRUNCATE, not DELETE: it waits for a fold in progress, whose rows a DELETE would not see.
CREATE FUNCTION items_tally_emptied() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE facet_tallies;
    RETURN NULL;
END
$$;
CREATE TRIGGER items_tally_truncated AFTER TRUNCATE ON items
    FOR EACH STATEMENT EXECUTE FUNCTION items_tally_emptied();

INSERT INTO facet_tallies (field, value, items)
SELECT v.field, v.value, count(*)
FROM items, facet_values(items.status, items.category, items.size, items.brand, items.colour,
                         items.condition, items.price) AS v
GROUP BY v.field, v.value;

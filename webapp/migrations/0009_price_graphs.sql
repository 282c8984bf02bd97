-- Price ceilings get partial HNSW graphs too (webapp.search.repo builds one per ceiling that holds
-- a useful share of the catalog): "under $10" on the main graph needs a beam many times the page,
-- because price does not follow the vector clusters; a graph of the items at or under $10 answers
-- it like an unfiltered search, and a lower ceiling ("under $5") as a share of that graph.
-- A partial index's predicate may only name its own table's columns, so the price is copied onto
-- item_embeddings beside category and colour, and the triggers keep all three in step.
--
-- The backfill rewrites every embedding row, which every HNSW graph of the table would take as an
-- insert; as in migrations 0007 and 0008 they are dropped first and rebuilt by the service when
-- it starts.
DO $$
DECLARE
    name text;
BEGIN
    FOR name IN
        SELECT relname FROM pg_class WHERE relkind = 'i' AND starts_with(relname, 'item_embeddings_half_')
    LOOP
        EXECUTE format('DROP INDEX %I', name);
    END LOOP;
END $$;

ALTER TABLE item_embeddings ADD COLUMN price numeric(12, 2);
UPDATE item_embeddings e SET price = i.price FROM items i WHERE i.id = e.item_id;

CREATE OR REPLACE FUNCTION item_embeddings_facets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT lower(category), lower(colour), price INTO NEW.category, NEW.colour, NEW.price
    FROM items WHERE id = NEW.item_id;
    RETURN NEW;
END
$$;

DROP TRIGGER items_facets_to_embeddings ON items;

CREATE OR REPLACE FUNCTION items_facets_to_embeddings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE item_embeddings
    SET category = lower(NEW.category), colour = lower(NEW.colour), price = NEW.price
    WHERE item_id = NEW.id
      AND (category IS DISTINCT FROM lower(NEW.category)
           OR colour IS DISTINCT FROM lower(NEW.colour)
           OR price IS DISTINCT FROM NEW.price);
    RETURN NULL;
END
$$;

CREATE TRIGGER items_facets_to_embeddings
    AFTER UPDATE OF category, colour, price ON items
    FOR EACH ROW WHEN (
        OLD.category IS DISTINCT FROM NEW.category
        OR OLD.colour IS DISTINCT FROM NEW.colour
        OR OLD.price IS DISTINCT FROM NEW.price
    )
    EXECUTE FUNCTION items_facets_to_embeddings();

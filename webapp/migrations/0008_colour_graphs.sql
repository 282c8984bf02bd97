-- Colour, like category, gets partial HNSW indexes of its own (webapp.search.repo builds one per
-- colour with enough items). Colour does not follow the vector clusters, so a colour filter on
-- the main graph needs a beam many times the page to fill it; a graph of one colour's items
-- answers it like an unfiltered search (pgvector's documentation: "Filtering", partial indexes).
-- A partial index's predicate may only name its own table's columns, so the lower-cased colour
-- is copied onto item_embeddings next to the category, and the triggers keep both in step.
--
-- Every embedding row is rewritten by the backfill, and each rewrite would be inserted into every
-- HNSW graph of the table; dropping them first and letting the service rebuild them when it
-- starts is faster (the same choice as migration 0007).
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

ALTER TABLE item_embeddings ADD COLUMN colour text;
UPDATE item_embeddings e SET colour = lower(i.colour) FROM items i WHERE i.id = e.item_id;

DROP TRIGGER item_embeddings_category ON item_embeddings;
DROP FUNCTION item_embeddings_category();
DROP TRIGGER items_category_to_embeddings ON items;
DROP FUNCTION items_category_to_embeddings();

CREATE FUNCTION item_embeddings_facets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT lower(category), lower(colour) INTO NEW.category, NEW.colour FROM items WHERE id = NEW.item_id;
    RETURN NEW;
END
$$;

CREATE TRIGGER item_embeddings_facets
    BEFORE INSERT OR UPDATE OF item_id ON item_embeddings
    FOR EACH ROW EXECUTE FUNCTION item_embeddings_facets();

CREATE FUNCTION items_facets_to_embeddings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE item_embeddings SET category = lower(NEW.category), colour = lower(NEW.colour)
    WHERE item_id = NEW.id
      AND (category IS DISTINCT FROM lower(NEW.category) OR colour IS DISTINCT FROM lower(NEW.colour));
    RETURN NULL;
END
$$;

CREATE TRIGGER items_facets_to_embeddings
    AFTER UPDATE OF category, colour ON items
    FOR EACH ROW WHEN (OLD.category IS DISTINCT FROM NEW.category OR OLD.colour IS DISTINCT FROM NEW.colour)
    EXECUTE FUNCTION items_facets_to_embeddings();

-- Search keys cached result pages by the catalog version. Rather than read it on every search,
-- each process LISTENs on 'catalog_version' and this trigger announces every bump as
-- "<version>:<pid of the writing backend>" (the pid lets a process recognise its own writes).
-- NOTIFY is delivered at commit, and not at all on rollback (PostgreSQL docs, NOTIFY).
CREATE FUNCTION notify_catalog_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('catalog_version', NEW.version::text || ':' || pg_backend_pid()::text);
    RETURN NEW;
END
$$;

CREATE TRIGGER catalog_version_notify
    AFTER UPDATE OF version ON catalog_state
    FOR EACH ROW EXECUTE FUNCTION notify_catalog_version();

-- Category filters cut across the vector space (a query's neighbourhood is mostly one kind of
-- garment), so filtering one HNSW graph loses recall: pgvector's documentation suggests a
-- partial index per filter value instead. A partial index's predicate may only name its own
-- table's columns, so the (lower-cased) category is copied onto item_embeddings and kept in
-- step by triggers. webapp.search.repo builds the per-category indexes it finds worthwhile.
ALTER TABLE item_embeddings ADD COLUMN category text;
UPDATE item_embeddings e SET category = lower(i.category) FROM items i WHERE i.id = e.item_id;

CREATE FUNCTION item_embeddings_category() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.category := (SELECT lower(category) FROM items WHERE id = NEW.item_id);
    RETURN NEW;
END
$$;

CREATE TRIGGER item_embeddings_category
    BEFORE INSERT OR UPDATE OF item_id ON item_embeddings
    FOR EACH ROW EXECUTE FUNCTION item_embeddings_category();

CREATE FUNCTION items_category_to_embeddings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE item_embeddings SET category = lower(NEW.category)
    WHERE item_id = NEW.id AND category IS DISTINCT FROM lower(NEW.category);
    RETURN NULL;
END
$$;

CREATE TRIGGER items_category_to_embeddings
    AFTER UPDATE OF category ON items
    FOR EACH ROW WHEN (OLD.category IS DISTINCT FROM NEW.category)
    EXECUTE FUNCTION items_category_to_embeddings();

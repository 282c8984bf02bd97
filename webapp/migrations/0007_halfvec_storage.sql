-- Embeddings are stored in half precision (pgvector's halfvec, 2 bytes a dimension). A 512-d
-- vector then takes 1,028 bytes and stays in its row; in float32 it took 2,056, past
-- PostgreSQL's 2 kB TOAST threshold, so every exact scan and every candidate of a filtered index
-- scan read it out of line. Half precision changes a cosine by about 1e-4 (pgvector documents
-- halfvec for exactly this trade).
-- The float32 HNSW indexes go first (an ALTER would rebuild them only to have them replaced):
-- the service builds half-precision ones when it starts.
DO $$
DECLARE
    name text;
BEGIN
    FOR name IN
        SELECT relname FROM pg_class WHERE relkind = 'i' AND starts_with(relname, 'item_embeddings_hnsw_')
    LOOP
        EXECUTE format('DROP INDEX %I', name);
    END LOOP;
END $$;

ALTER TABLE item_embeddings ALTER COLUMN embedding TYPE halfvec USING embedding::halfvec;

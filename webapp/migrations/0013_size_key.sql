-- One key per size however a shop writes it ("10", "UK 10", "uk10" and "Size 10" are one size):
-- size filters and size facets compare the key, and the size as written is what shoppers see.
-- The rules are webapp.catalog.sizes.size_key's; this function states them for the database and
-- a test holds the two to the same answers. The key is a generated column so that every writer
-- (the API, bulk loads, older instances during a deploy) stores it and none can leave it stale,
-- and adding it computes it for the rows already there.
CREATE FUNCTION catalog_size_key(written text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    t text := regexp_replace(btrim(regexp_replace(lower(written), '[[:space:]]+', ' ', 'g')),
                             '^size[[:space:]]*:?[[:space:]]*', '');
    c text := regexp_replace(t, '[[:space:].-]', '', 'g');
    m text[];
BEGIN
    IF t = '' THEN
        RETURN NULL;
    END IF;
    CASE
        WHEN c IN ('xxxs', '3xs') THEN RETURN 'xxxs';
        WHEN c IN ('xxs', '2xs') THEN RETURN 'xxs';
        WHEN c IN ('xs', 'xsmall', 'extrasmall') THEN RETURN 'xs';
        WHEN c IN ('s', 'sm', 'small') THEN RETURN 's';
        WHEN c IN ('m', 'med', 'medium') THEN RETURN 'm';
        WHEN c IN ('l', 'lg', 'lrg', 'large') THEN RETURN 'l';
        WHEN c IN ('xl', 'xlarge', 'extralarge') THEN RETURN 'xl';
        WHEN c IN ('xxl', '2xl', 'xxlarge') THEN RETURN 'xxl';
        WHEN c IN ('xxxl', '3xl') THEN RETURN 'xxxl';
        WHEN c IN ('xxxxl', '4xl') THEN RETURN 'xxxxl';
        WHEN c IN ('os', 'onesize') THEN RETURN 'os';
        ELSE NULL;
    END CASE;
    -- Waist and length in inches as jeans are sold; outside these, "10/12" is a dress size range.
    m := regexp_match(t, '^w?\s*(\d{2})\s*w?\s*(?:x|/|\s|(?=l))\s*l?\s*(\d{2})\s*l?$');
    IF m IS NOT NULL AND m[1]::int BETWEEN 22 AND 50 AND m[2]::int BETWEEN 26 AND 38 THEN
        RETURN 'w' || m[1]::int || ' l' || m[2]::int;
    END IF;
    m := regexp_match(t, '^(?:w\s*(\d{2})|(\d{2})\s*w)$');
    IF m IS NOT NULL THEN
        RETURN 'w' || coalesce(m[1], m[2]);
    END IF;
    m := regexp_match(t, '^(uk|us|eu|it|fr|au)\s*(\d{1,3}(?:\.5)?)$');
    IF m IS NOT NULL THEN
        RETURN m[1] || ' ' || m[2];
    END IF;
    m := regexp_match(t, '^(\d{1,3}(?:\.5)?)\s*(uk|us|eu|it|fr|au)$');
    IF m IS NOT NULL THEN
        RETURN m[2] || ' ' || m[1];
    END IF;
    RETURN t;
END
$$;

ALTER TABLE items ADD COLUMN size_key text GENERATED ALWAYS AS (catalog_size_key(size)) STORED;

-- Size filters read the key now, not the size as written.
DROP INDEX items_size;
CREATE INDEX items_size_key ON items (size_key) WHERE status = 'ready';
-- Facet counts under a category stay index-only scans with the key beside the other fields.
DROP INDEX items_facets;
CREATE INDEX items_facets ON items (lower(category))
    INCLUDE (category, size, size_key, brand, colour, condition, price) WHERE status = 'ready';

-- A garment's condition is one of the catalog's (webapp/catalog/garment.py), in the database as
-- in the API: a row written around the API (COPY, an operator's UPDATE) cannot hold a condition
-- that search filters never match. The status has been checked the same way since 0004.

-- Rows written before the check are brought into the list: other spellings of a condition
-- ("Like new", "new-with-tags") become the API's, "very good" is good (as the query reader takes
-- it), and anything else becomes no condition rather than failing the migration.
UPDATE items SET condition = replace(replace(lower(btrim(condition)), ' ', '_'), '-', '_')
WHERE condition NOT IN ('new_with_tags', 'like_new', 'good', 'fair', 'worn');
UPDATE items SET condition = 'good' WHERE condition = 'very_good';
UPDATE items SET condition = NULL
WHERE condition NOT IN ('new_with_tags', 'like_new', 'good', 'fair', 'worn');

ALTER TABLE items ADD CONSTRAINT items_condition_check
    CHECK (condition IN ('new_with_tags', 'like_new', 'good', 'fair', 'worn'));

-- Cached result pages may show a condition changed above.
UPDATE catalog_state SET version = version + 1 WHERE id = 1;

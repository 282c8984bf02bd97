-- Filtered searches find their items without reading item rows.
--
-- A filtered vector search that passes few items scans them exactly: it needs the ids of the
-- items passing every filter. The covering facet index led by category lacked the id, so that
-- scan read each item's row; a second one led by colour serves filters without a category.
-- An index-only scan needs every column the query names, so the raw columns are included beside
-- the lower() keys (PostgreSQL docs, "Index-Only Scans and Covering Indexes").
DROP INDEX items_facets;
CREATE INDEX items_facets ON items (lower(category))
    INCLUDE (id, category, size, size_key, brand, colour, condition, price) WHERE status = 'ready';
CREATE INDEX items_colour_facets ON items (lower(colour))
    INCLUDE (id, colour, category, size_key, brand, condition, price) WHERE status = 'ready';

-- The planner ignores statistics of a partial index's expressions, so without these it guessed
-- every lower(column) = value at its fixed default selectivity and combined filters at a few rows, and
-- picked plans that read every matching category's rows. Expression statistics and the
-- facets' joint most-common values fix both (PostgreSQL docs, CREATE STATISTICS).
CREATE STATISTICS items_lower_category ON (lower(category)) FROM items;
CREATE STATISTICS items_lower_colour ON (lower(colour)) FROM items;
CREATE STATISTICS items_lower_brand ON (lower(brand)) FROM items;
CREATE STATISTICS items_facet_values (mcv) ON lower(category), lower(colour), lower(brand), size_key, condition
    FROM items;
ANALYZE items;

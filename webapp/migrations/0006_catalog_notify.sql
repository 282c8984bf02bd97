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

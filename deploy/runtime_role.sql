-- Grants for the role `arctyk serve` runs as, in a deployment with separate roles:
-- the owner role owns the schema and runs `arctyk migrate`; the runtime role may append
-- to the event log but never change or remove what it holds.
--
-- Run as the owner (or a superuser) after every `arctyk migrate`; it is idempotent and
-- covers tables that later migrations add. The runtime role must exist already
-- (CREATE ROLE arctyk_app LOGIN PASSWORD '...'). Name it with a setting:
--
--   psql "$OWNER_DATABASE_URL" -c "SET arctyk.runtime_role = 'arctyk_app'" \
--        -f deploy/runtime_role.sql
--
-- What the runtime role gets:
-- - events: SELECT and INSERT only. No UPDATE, DELETE or TRUNCATE: PostgreSQL refuses
--   them with "permission denied" before the append-only triggers are even reached.
--   Audit checkpoints (when the schema has them) are append-only the same way.
-- - _sqlx_migrations: SELECT only, so `serve` can see the schema is current and skip
--   migrating (it applies migrations only when some are pending, which this role cannot).
-- - every other table (read models, checkpoints, users and tokens, webhook and
--   notification queues): SELECT, INSERT, UPDATE, DELETE; projections rebuild with DELETE.
-- - every sequence (the events position, ticket, project and asset numbers, serial ids):
--   USAGE and SELECT (nextval, currval).
-- - functions in the schema: EXECUTE (PostgreSQL's default; the trigger functions run
--   with the caller's rights).
-- It gets no CREATE on the schema and owns nothing, so it cannot alter or drop tables or
-- disable the triggers.
DO
$$
DECLARE
    runtime text := current_setting('arctyk.runtime_role', true);
    append_only text[] := ARRAY['events', 'audit_checkpoints'];
    target record;
BEGIN
    IF runtime IS NULL OR runtime = '' THEN
        RAISE EXCEPTION 'set arctyk.runtime_role to the runtime role''s name first';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = runtime) THEN
        RAISE EXCEPTION 'role % does not exist', runtime;
    END IF;

    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), runtime);
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', runtime);
    EXECUTE format('REVOKE CREATE ON SCHEMA public FROM %I', runtime);

    FOR target IN
        SELECT c.relname
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v')
    LOOP
        EXECUTE format('REVOKE ALL ON TABLE public.%I FROM %I', target.relname, runtime);
        IF target.relname = ANY (append_only) THEN
            EXECUTE format('GRANT SELECT, INSERT ON TABLE public.%I TO %I',
                           target.relname, runtime);
        ELSIF target.relname = '_sqlx_migrations' THEN
            EXECUTE format('GRANT SELECT ON TABLE public.%I TO %I', target.relname, runtime);
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.%I TO %I',
                           target.relname, runtime);
        END IF;
    END LOOP;

    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO %I', runtime);
END;
$$;

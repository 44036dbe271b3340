-- The event log: postgres-es's `events` table, plus a global order.
--
-- `position` orders events in the log; `transaction_id` lets a reader skip past events
-- of transactions that are still running without losing them (see
-- projections::subscription). Columns that postgres-es does not name in its INSERT are
-- filled by their defaults.
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    position       bigserial                    NOT NULL UNIQUE,
    transaction_id xid8        DEFAULT pg_current_xact_id() NOT NULL,
    recorded_at    timestamptz DEFAULT now()                NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE INDEX events_global_order ON events (transaction_id, position);

-- The log is append-only: history that can be rewritten cannot be audited.
CREATE FUNCTION events_append_only() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on events is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

-- There is deliberately no NOTIFY trigger here: a transaction that issues NOTIFY takes
-- a cluster-wide lock at commit, which turns concurrent appends into a queue of single
-- fsyncs. Writers notify `arctyk_events` after their commit instead, coalesced
-- (projections::subscription::LogNotifier), and subscribers also poll.

-- Durable positions of the log's subscribers (projections, deliveries). A subscriber's
-- checkpoint changes in the same transaction as the work it records.
CREATE TABLE subscription_checkpoints
(
    name           text PRIMARY KEY,
    transaction_id xid8        NOT NULL DEFAULT '0',
    position       bigint      NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Ticket numbers are handed out by the database; the aggregate id is the number.
CREATE SEQUENCE ticket_numbers AS bigint START 1;

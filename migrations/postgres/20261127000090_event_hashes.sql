-- Tamper evidence: every event carries a hash chained to its aggregate's previous event,
-- and checkpoints record a running hash over the log in its global order.
--
-- hash = sha256(hash of the same aggregate's event at sequence - 1 (no bytes for the
--               first event) || canonical bytes of this event)
-- canonical bytes = UTF-8 of aggregate_type, aggregate_id, sequence, event_type,
--                   event_version, payload::text, metadata::text joined by '\n'
--
-- `payload` and `metadata` are `json`, which keeps the text it was given: `::text` is the
-- stored text, byte for byte. `position`, `transaction_id` and `recorded_at` are not
-- hashed (see README, "Tamper evidence"). `arctyk audit verify` recomputes the same bytes
-- independently (src/audit/chain.rs); the two must agree.

ALTER TABLE events ADD COLUMN hash bytea;

CREATE FUNCTION event_canonical_bytes(aggregate_type text, aggregate_id text, sequence bigint,
                                      event_type text, event_version text, payload json,
                                      metadata json) RETURNS bytea
    LANGUAGE sql IMMUTABLE AS
$$
SELECT convert_to(aggregate_type || E'\n' || aggregate_id || E'\n' || sequence::text || E'\n'
                      || event_type || E'\n' || event_version || E'\n' || payload::text
                      || E'\n' || metadata::text, 'UTF8')
$$;

-- Existing events, each aggregate in sequence order. The append-only trigger refuses
-- UPDATE, so it is off for this one statement of the migration's transaction.
ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete;

DO
$$
    DECLARE
        event    record;
        previous bytea := '';
        last_type text;
        last_id   text;
    BEGIN
        FOR event IN SELECT aggregate_type, aggregate_id, sequence, event_type, event_version,
                            payload, metadata
                       FROM events
                      ORDER BY aggregate_type, aggregate_id, sequence
            LOOP
                IF last_type IS DISTINCT FROM event.aggregate_type
                    OR last_id IS DISTINCT FROM event.aggregate_id THEN
                    previous := '';
                END IF;
                previous := sha256(previous || event_canonical_bytes(
                        event.aggregate_type, event.aggregate_id, event.sequence,
                        event.event_type, event.event_version, event.payload, event.metadata));
                UPDATE events
                   SET hash = previous
                 WHERE aggregate_type = event.aggregate_type
                   AND aggregate_id = event.aggregate_id
                   AND sequence = event.sequence;
                last_type := event.aggregate_type;
                last_id := event.aggregate_id;
            END LOOP;
    END
$$;

ALTER TABLE events ENABLE TRIGGER events_no_update_or_delete;

ALTER TABLE events ALTER COLUMN hash SET NOT NULL;

-- Every new event: the hash is computed here, whatever the writer sent. A writer appends
-- sequence n + 1 only after it has read sequence n (postgres-es's optimistic
-- concurrency), so the previous event is visible here; were it missing, the chain starts
-- over from no bytes and `audit verify` reports the gap.
CREATE FUNCTION events_chain_hash() RETURNS trigger
    LANGUAGE plpgsql AS
$$
DECLARE
    previous bytea;
BEGIN
    IF NEW.sequence > 1 THEN
        SELECT hash INTO previous
          FROM events
         WHERE aggregate_type = NEW.aggregate_type
           AND aggregate_id = NEW.aggregate_id
           AND sequence = NEW.sequence - 1;
    END IF;
    NEW.hash := sha256(coalesce(previous, '') || event_canonical_bytes(
            NEW.aggregate_type, NEW.aggregate_id, NEW.sequence, NEW.event_type,
            NEW.event_version, NEW.payload, NEW.metadata));
    RETURN NEW;
END;
$$;

CREATE TRIGGER events_chain_hash
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_chain_hash();

-- Running hashes over the log in global order (transaction_id, position), written by the
-- server's `audit_checkpoints` subscriber: each row's hash is
-- sha256(previous row's hash (no bytes for the first) || the hash of every event after
-- the previous row's event, up to and including the event at `position`).
CREATE TABLE audit_checkpoints
(
    position       bigint PRIMARY KEY,
    transaction_id xid8        NOT NULL,
    events         bigint      NOT NULL,
    hash           bytea       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX audit_checkpoints_order ON audit_checkpoints (transaction_id, position);

-- Checkpoints are evidence too: append-only like the log.
CREATE FUNCTION audit_checkpoints_append_only() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'audit checkpoints are append-only: % on audit_checkpoints is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_checkpoints_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_append_only();

CREATE TRIGGER audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoints_append_only();

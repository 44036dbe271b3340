-- A subscriber's batch on a busy log in one round trip: serialise the subscriber across
-- processes, read its checkpoint (after the lock is granted: each statement of a function
-- sees what was committed before it began), read up to `size` events after it (or after
-- `floor`, where this process already is, when that is later) in global order below the
-- oldest running transaction, and move the checkpoint past them. The caller's transaction
-- then applies the events and commits both together; were it to fail, the checkpoint
-- moves back with the rest. Same lock key and same read as
-- projections::subscription::{checkpoints::lock, read_after}.
CREATE FUNCTION subscription_take_batch(subscriber text, floor_transaction_id bigint,
                                        floor_position bigint, size integer)
    RETURNS TABLE
            (
                "position"     bigint,
                transaction_id bigint,
                aggregate_type text,
                aggregate_id   text,
                sequence       bigint,
                event_type     text,
                event_version  text,
                payload        json,
                metadata       json,
                recorded_at    timestamptz
            )
    LANGUAGE plpgsql VOLATILE AS
$$
DECLARE
    from_transaction xid8;
    from_position    bigint;
    last_transaction xid8;
    last_position    bigint;
    event            record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('arctyk.subscription.' || subscriber, 0));
    SELECT c.transaction_id, c.position
      INTO from_transaction, from_position
      FROM subscription_checkpoints c
     WHERE c.name = subscriber;
    IF from_transaction IS NULL OR (from_transaction, from_position)
        < (floor_transaction_id::text::xid8, floor_position) THEN
        from_transaction := floor_transaction_id::text::xid8;
        from_position := floor_position;
    END IF;
    FOR event IN
        SELECT e.position, e.transaction_id AS xid, e.aggregate_type, e.aggregate_id,
               e.sequence, e.event_type, e.event_version, e.payload, e.metadata,
               e.recorded_at
          FROM events e
         WHERE (e.transaction_id, e.position) > (from_transaction, from_position)
           AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY e.transaction_id, e.position
         LIMIT size
        LOOP
            "position" := event.position;
            transaction_id := event.xid::text::bigint;
            aggregate_type := event.aggregate_type;
            aggregate_id := event.aggregate_id;
            sequence := event.sequence;
            event_type := event.event_type;
            event_version := event.event_version;
            payload := event.payload;
            metadata := event.metadata;
            recorded_at := event.recorded_at;
            RETURN NEXT;
            last_transaction := event.xid;
            last_position := event.position;
        END LOOP;
    IF last_position IS NOT NULL THEN
        INSERT INTO subscription_checkpoints (name, transaction_id, position, updated_at)
        VALUES (subscriber, last_transaction, last_position, now())
            ON CONFLICT (name) DO UPDATE
            SET transaction_id = excluded.transaction_id,
                position = excluded.position,
                updated_at = now();
    END IF;
END;
$$;

-- A subscriber's batch begins by serialising the subscriber across processes and reading
-- its checkpoint; this does both in one round trip. The checkpoint is read after the lock
-- is granted, by a statement of its own (a function's statements each see what was
-- committed before they began), so a batch another process committed while this one
-- waited for the lock is seen. Same lock key as `pg_advisory_xact_lock` in
-- projections::subscription::checkpoints::lock.
CREATE FUNCTION subscription_checkpoint_locked(subscriber text,
                                               OUT transaction_id bigint,
                                               OUT "position" bigint)
    LANGUAGE plpgsql VOLATILE AS
$$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('arctyk.subscription.' || subscriber, 0));
    SELECT c.transaction_id::text::bigint, c.position
      INTO transaction_id, "position"
      FROM subscription_checkpoints c
     WHERE c.name = subscriber;
END;
$$;

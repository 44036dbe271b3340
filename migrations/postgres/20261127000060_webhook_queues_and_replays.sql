-- Webhook queues keyed by aggregate, not only by ticket, so project and asset events are
-- delivered in order too; queue order is the delivery's id (the enqueuer writes in log
-- order, and replays are serialised with it). Replays add new deliveries of past events.

CREATE TABLE webhook_replays (
    id              bigserial PRIMARY KEY,
    subscription_id bigint NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    -- What was asked for: events after this position, or recorded at or after this time.
    from_position   bigint,
    since           timestamptz,
    -- The last position the replay covered (the enqueuer's checkpoint when it ran);
    -- later events reach the subscription live.
    until_position  bigint NOT NULL,
    deliveries      bigint NOT NULL,
    requested_by    text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((from_position IS NULL) <> (since IS NULL))
);

ALTER TABLE webhook_deliveries
    -- `ticket:<number>`, `project:<id>`, `asset:<id>`: the aggregate whose events this
    -- queue carries in order.
    ADD COLUMN queue text,
    -- Set on deliveries made by a replay.
    ADD COLUMN replay_id bigint REFERENCES webhook_replays (id) ON DELETE CASCADE;
UPDATE webhook_deliveries SET queue = 'ticket:' || ticket;
ALTER TABLE webhook_deliveries
    ALTER COLUMN queue SET NOT NULL,
    -- Project and asset events have no ticket.
    ALTER COLUMN ticket DROP NOT NULL,
    DROP CONSTRAINT webhook_deliveries_subscription_id_position_key;

-- Each event is enqueued live once per subscription, and once per replay.
CREATE UNIQUE INDEX webhook_deliveries_live
    ON webhook_deliveries (subscription_id, position) WHERE replay_id IS NULL;
CREATE UNIQUE INDEX webhook_deliveries_replayed
    ON webhook_deliveries (replay_id, position) WHERE replay_id IS NOT NULL;

DROP INDEX webhook_deliveries_open;
CREATE INDEX webhook_deliveries_open
    ON webhook_deliveries (subscription_id, queue, id)
    WHERE status IN ('pending', 'parked');

-- Webhooks on the embedded backend: subscriptions, their durable per-(subscription,
-- aggregate) delivery queues, the log of every attempt, replays, and the enqueuer's copies
-- of the records it publishes. The final shape of migrations/postgres/*webhook*.sql, in
-- SQLite's types (see 20261128000001_ticket_core.sql). Timestamps that are compared
-- (`next_attempt_at`, `lease_until`, `previous_secret_expires_at`) have no default: the
-- application writes them from its clock.

CREATE TABLE webhook_subscriptions
(
    id                         INTEGER PRIMARY KEY AUTOINCREMENT,
    url                        TEXT    NOT NULL,
    -- Public event names as a JSON array; ["*"] for all of them.
    events                     TEXT    NOT NULL DEFAULT '["*"]',
    secret                     TEXT    NOT NULL,
    enabled                    INTEGER NOT NULL DEFAULT 1,
    description                TEXT    NOT NULL DEFAULT '',
    -- Set when a delivery exhausted its retries and parked its queue.
    failing                    INTEGER NOT NULL DEFAULT 0,
    disabled_reason            TEXT,
    created_at                 TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    -- Secret rotation: the replaced secret keeps signing, alongside the new one, until
    -- `previous_secret_expires_at`.
    previous_secret            TEXT,
    previous_secret_expires_at TEXT
);

CREATE TABLE webhook_replays
(
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id INTEGER NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    -- What was asked for: events after this position, or recorded at or after this time.
    from_position   INTEGER,
    since           TEXT,
    -- The last position the replay covered (the enqueuer's checkpoint when it ran).
    until_position  INTEGER NOT NULL,
    deliveries      INTEGER NOT NULL,
    requested_by    TEXT    NOT NULL,
    created_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    CHECK ((from_position IS NULL) <> (since IS NULL))
);

CREATE INDEX webhook_replays_subscription ON webhook_replays (subscription_id);

-- Queue order is the delivery's id: AUTOINCREMENT never hands an id out twice.
CREATE TABLE webhook_deliveries
(
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id INTEGER NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    -- `ticket:<number>`, `project:<id>`, `asset:<id>`: the aggregate whose events this
    -- queue carries in order.
    queue           TEXT    NOT NULL,
    -- The ticket number; null for project and asset events.
    ticket          INTEGER,
    sequence        INTEGER NOT NULL,
    position        INTEGER NOT NULL,
    event           TEXT    NOT NULL,
    -- The body, exactly as it is sent on every attempt.
    payload         TEXT    NOT NULL,
    -- `webhook-id`: stable across retries of this event to this subscription.
    webhook_id      TEXT    NOT NULL,
    -- Set on deliveries made by a replay.
    replay_id       INTEGER REFERENCES webhook_replays (id) ON DELETE CASCADE,
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'parked', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    -- The worker holds the delivery until then; an expired lease (a crashed worker) lets
    -- it be taken again.
    lease_until     TEXT,
    last_error      TEXT,
    skipped_by      TEXT,
    created_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    delivered_at    TEXT
);

-- Each event is enqueued live once per subscription, and once per replay.
CREATE UNIQUE INDEX webhook_deliveries_live
    ON webhook_deliveries (subscription_id, position) WHERE replay_id IS NULL;
CREATE UNIQUE INDEX webhook_deliveries_replayed
    ON webhook_deliveries (replay_id, position) WHERE replay_id IS NOT NULL;
-- The open queue of each (subscription, aggregate), for finding heads.
CREATE INDEX webhook_deliveries_open
    ON webhook_deliveries (subscription_id, queue, id)
    WHERE status IN ('pending', 'parked');
-- Heads are claimed oldest first.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_listing ON webhook_deliveries (subscription_id, id);

CREATE TABLE webhook_attempts
(
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id      INTEGER NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    at               TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    status_code      INTEGER,
    duration_ms      INTEGER NOT NULL,
    error            TEXT,
    -- The first 2 KB of the response body.
    response_excerpt TEXT
);

CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);

-- Each record whose events are published (tickets, projects, assets) as it stood after
-- the last event the webhook enqueuer handled, so each delivery carries the record after
-- its own event. Aggregate ids are unique per type only.
CREATE TABLE webhook_aggregate_states
(
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    state          TEXT    NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

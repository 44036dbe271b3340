-- Webhook subscriptions, their durable per-(subscription, ticket) delivery queues, and
-- the log of every delivery attempt.

CREATE TABLE webhook_subscriptions (
    id              bigserial PRIMARY KEY,
    url             text NOT NULL,
    -- Public event names, or '*' for all of them.
    events          text[] NOT NULL DEFAULT '{*}',
    secret          text NOT NULL,
    enabled         boolean NOT NULL DEFAULT true,
    description     text NOT NULL DEFAULT '',
    -- Set when a delivery exhausted its retries and parked its ticket's queue.
    failing         boolean NOT NULL DEFAULT false,
    disabled_reason text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_deliveries (
    id               bigserial PRIMARY KEY,
    subscription_id  bigint NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    -- The ticket's aggregate id (its number).
    ticket           bigint NOT NULL,
    sequence         bigint NOT NULL,
    position         bigint NOT NULL,
    event            text NOT NULL,
    -- The body, exactly as it is sent on every attempt.
    payload          jsonb NOT NULL,
    -- `webhook-id`: stable across retries of this event to this subscription.
    webhook_id       text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'parked', 'skipped')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- A worker holds the delivery until then; an expired lease (a crashed worker) lets
    -- another take it again.
    lease_until      timestamptz,
    last_error       text,
    skipped_by       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    UNIQUE (subscription_id, position)
);

-- The open queue of each (subscription, ticket), for finding heads.
CREATE INDEX webhook_deliveries_open
    ON webhook_deliveries (subscription_id, ticket, sequence)
    WHERE status IN ('pending', 'parked');
CREATE INDEX webhook_deliveries_due
    ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_listing
    ON webhook_deliveries (subscription_id, id);

CREATE TABLE webhook_attempts (
    id               bigserial PRIMARY KEY,
    delivery_id      bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    at               timestamptz NOT NULL DEFAULT now(),
    status_code      integer,
    duration_ms      integer NOT NULL,
    error            text,
    -- The first 2 KB of the response body.
    response_excerpt text
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);

-- The ticket as it stood after the last event the webhook enqueuer handled, so each
-- delivery carries the ticket after its own event.
CREATE TABLE webhook_ticket_states (
    aggregate_id text PRIMARY KEY,
    version      bigint NOT NULL,
    state        jsonb NOT NULL
);

-- Notifications: email to people, and messages to Slack and Microsoft Teams channels.
-- The `notifications` subscriber writes one delivery per (event, recipient or channel)
-- in the transaction that moves its checkpoint; a worker sends the head of each
-- (recipient or channel, ticket) queue, so one failing address or channel holds no other.

-- What each user opted out of; absent means everything is on.
CREATE TABLE notification_preferences (
    user_id       bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- Public event names (`ticket.created` …) the user gets no email for.
    email_opt_out text[] NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Slack and Teams incoming-webhook channels.
CREATE TABLE chat_channels (
    id              bigserial PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('slack', 'teams')),
    name            text NOT NULL DEFAULT '',
    url             text NOT NULL,
    -- Public event names, or '*' for all of them.
    events          text[] NOT NULL,
    -- Only tickets of this project, when set.
    project_id      bigint,
    enabled         boolean NOT NULL DEFAULT true,
    -- Why the channel was disabled (e.g. Slack answered 410 channel_is_archived).
    disabled_reason text,
    -- The channel of SLACK_WEBHOOK_URL or TEAMS_WEBHOOK_URL, kept in step at start-up.
    from_config     boolean NOT NULL DEFAULT false,
    -- Messages to one channel are paced (about one a second, longer after a 429).
    next_send_at    timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX chat_channels_from_config ON chat_channels (kind) WHERE from_config;

CREATE TABLE notification_deliveries (
    id              bigserial PRIMARY KEY,
    -- 'email', 'slack' or 'teams'.
    channel         text NOT NULL CHECK (channel IN ('email', 'slack', 'teams')),
    -- The address for email; the chat channel's id for Slack and Teams.
    recipient       text NOT NULL,
    chat_channel_id bigint REFERENCES chat_channels (id) ON DELETE CASCADE,
    -- `<channel>:<recipient>:ticket:<number>`: what is sent in order.
    queue           text NOT NULL,
    ticket          bigint NOT NULL,
    sequence        bigint NOT NULL,
    position        bigint NOT NULL,
    event           text NOT NULL,
    -- The message, rendered when the event was enqueued, as it is sent on every attempt.
    payload         jsonb NOT NULL,
    -- 'failed': refused for good, or out of retries; the queue moves on without it.
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (channel, recipient, position)
);
CREATE INDEX notification_deliveries_open
    ON notification_deliveries (queue, id) WHERE status = 'pending';
CREATE INDEX notification_deliveries_due
    ON notification_deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE notification_attempts (
    id               bigserial PRIMARY KEY,
    delivery_id      bigint NOT NULL REFERENCES notification_deliveries (id) ON DELETE CASCADE,
    at               timestamptz NOT NULL DEFAULT now(),
    -- The HTTP status (chat) or SMTP reply code (email); null when no answer came.
    status_code      integer,
    duration_ms      integer NOT NULL,
    error            text,
    response_excerpt text
);
CREATE INDEX notification_attempts_delivery ON notification_attempts (delivery_id, id);

-- The ticket as it stood after the last event the notifications subscriber handled, so
-- each message names the people and values of its own moment.
CREATE TABLE notification_ticket_states (
    aggregate_id text PRIMARY KEY,
    version      bigint NOT NULL,
    state        jsonb NOT NULL
);

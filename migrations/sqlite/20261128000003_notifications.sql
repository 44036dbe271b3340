-- Notifications: email to people, and messages to Slack and Microsoft Teams channels
-- (the tables of migrations/postgres/20261127000070_notifications.sql, in SQLite's
-- types). The `notifications` subscriber writes one delivery per (event, recipient or
-- channel) in the transaction that moves its checkpoint; a worker sends the head of each
-- (recipient or channel, ticket) queue, so one failing address or channel holds no other.
--
-- Times that are compared (`next_send_at`, `next_attempt_at`, `lease_until`) have no
-- default: the application writes them from its clock, in the format every other time
-- of this database has. Lists of event names are JSON arrays of strings.

-- What each user opted out of; absent means everything is on.
CREATE TABLE notification_preferences
(
    user_id       INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- Public event names (`ticket.created` …) the user gets no email for.
    email_opt_out TEXT NOT NULL DEFAULT '[]',
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);

-- Slack and Teams incoming-webhook channels.
CREATE TABLE chat_channels
(
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT    NOT NULL CHECK (kind IN ('slack', 'teams')),
    name            TEXT    NOT NULL DEFAULT '',
    url             TEXT    NOT NULL,
    -- Public event names, or '*' for all of them.
    events          TEXT    NOT NULL,
    -- Only tickets of this project, when set.
    project_id      INTEGER,
    enabled         INTEGER NOT NULL DEFAULT 1,
    -- Why the channel was disabled (e.g. Slack answered 410 channel_is_archived).
    disabled_reason TEXT,
    -- The channel of SLACK_WEBHOOK_URL or TEAMS_WEBHOOK_URL, kept in step at start-up.
    from_config     INTEGER NOT NULL DEFAULT 0,
    -- Messages to one channel are paced (about one a second, longer after a 429).
    next_send_at    TEXT    NOT NULL,
    created_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);

CREATE UNIQUE INDEX chat_channels_from_config ON chat_channels (kind) WHERE from_config;

CREATE TABLE notification_deliveries
(
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- 'email', 'slack' or 'teams'.
    channel         TEXT    NOT NULL CHECK (channel IN ('email', 'slack', 'teams')),
    -- The address for email; the chat channel's id for Slack and Teams.
    recipient       TEXT    NOT NULL,
    chat_channel_id INTEGER REFERENCES chat_channels (id) ON DELETE CASCADE,
    -- `<channel>:<recipient>:ticket:<number>`: what is sent in order.
    queue           TEXT    NOT NULL,
    ticket          INTEGER NOT NULL,
    sequence        INTEGER NOT NULL,
    position        INTEGER NOT NULL,
    event           TEXT    NOT NULL,
    -- The message, rendered when the event was enqueued, as it is sent on every attempt.
    payload         TEXT    NOT NULL,
    -- 'failed': refused for good, or out of retries; the queue moves on without it.
    status          TEXT    NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    lease_until     TEXT,
    last_error      TEXT,
    created_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    delivered_at    TEXT,
    UNIQUE (channel, recipient, position)
);

CREATE INDEX notification_deliveries_open
    ON notification_deliveries (queue, id) WHERE status = 'pending';
CREATE INDEX notification_deliveries_due
    ON notification_deliveries (next_attempt_at) WHERE status = 'pending';
-- A channel's pending messages, for the worker's look at which channels are ready
-- (PostgreSQL finds them through the due index).
CREATE INDEX notification_deliveries_chat_pending
    ON notification_deliveries (chat_channel_id) WHERE status = 'pending';

CREATE TABLE notification_attempts
(
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id      INTEGER NOT NULL REFERENCES notification_deliveries (id) ON DELETE CASCADE,
    at               TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    -- The HTTP status (chat) or SMTP reply code (email); null when no answer came.
    status_code      INTEGER,
    duration_ms      INTEGER NOT NULL,
    error            TEXT,
    response_excerpt TEXT
);

CREATE INDEX notification_attempts_delivery ON notification_attempts (delivery_id, id);

-- The ticket as it stood after the last event the notifications subscriber handled, so
-- each message names the people and values of its own moment.
CREATE TABLE notification_ticket_states
(
    aggregate_id TEXT PRIMARY KEY,
    version      INTEGER NOT NULL,
    state        TEXT    NOT NULL
);

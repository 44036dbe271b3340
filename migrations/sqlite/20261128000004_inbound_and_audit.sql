-- Inbound email and audit checkpoints on the embedded backend: the same tables as
-- migrations/postgres/*_inbound_email.sql and *_event_hashes.sql, in SQLite's types.
-- Times that are compared (`received_at`, the attachments' `created_at`) are written by
-- the application, never by a column default.

-- Every message received, kept raw with what became of it: a replayed message is
-- ingested once, a dropped one says why, and replies are threaded through the
-- Message-IDs of earlier messages.
CREATE TABLE inbound_messages
(
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The Message-ID without angle brackets, or `sha256-<hex>@arctyk.invalid` when the
    -- message has none: a message is ingested once.
    message_id    TEXT    NOT NULL UNIQUE,
    sender        TEXT    NOT NULL DEFAULT '',
    subject       TEXT    NOT NULL DEFAULT '',
    -- `cli` or `http`.
    received_via  TEXT    NOT NULL,
    -- `received` while being processed, then `ticket_created`, `commented` or `dropped`.
    outcome       TEXT    NOT NULL DEFAULT 'received',
    -- Why a message was dropped (`auto_submitted`, `precedence_bulk`, `rate_limited` …)
    -- or what was left out of it (attachments over the limits).
    reason        TEXT,
    ticket_number INTEGER,
    comment_id    BLOB,
    raw           BLOB    NOT NULL,
    received_at   TEXT    NOT NULL
);

CREATE INDEX inbound_messages_sender ON inbound_messages (lower(sender), received_at);
CREATE INDEX inbound_messages_ticket ON inbound_messages (ticket_number);

CREATE TABLE inbound_attachments
(
    id                 BLOB PRIMARY KEY,
    inbound_message_id INTEGER NOT NULL REFERENCES inbound_messages (id) ON DELETE CASCADE,
    ticket_number      INTEGER NOT NULL,
    comment_id         BLOB,
    filename           TEXT    NOT NULL,
    content_type       TEXT    NOT NULL,
    size_bytes         INTEGER NOT NULL,
    sha256             TEXT    NOT NULL,
    content            BLOB    NOT NULL,
    created_at         TEXT    NOT NULL
);

CREATE INDEX inbound_attachments_ticket ON inbound_attachments (ticket_number);

-- Running hashes over the log in global order, written by the server's
-- `audit_checkpoints` subscriber: each row's hash is sha256(previous row's hash (no bytes
-- for the first) || the hash of every event after the previous row's event, up to and
-- including the event at `position`). The log's global order is `position` here, so
-- `transaction_id` equals `position`.
CREATE TABLE audit_checkpoints
(
    position       INTEGER PRIMARY KEY,
    transaction_id INTEGER NOT NULL,
    events         INTEGER NOT NULL,
    hash           BLOB    NOT NULL,
    created_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);

CREATE INDEX audit_checkpoints_order ON audit_checkpoints (transaction_id, position);

-- Checkpoints are evidence too: append-only like the log. (SQLite has no TRUNCATE; a
-- DELETE without WHERE runs the trigger too.)
CREATE TRIGGER audit_checkpoints_no_update
    BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only: UPDATE on audit_checkpoints is not allowed');
END;

CREATE TRIGGER audit_checkpoints_no_delete
    BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only: DELETE on audit_checkpoints is not allowed');
END;

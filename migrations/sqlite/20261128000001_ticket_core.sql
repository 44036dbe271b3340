-- The embedded backend's schema: the same tables as migrations/postgres, in SQLite's
-- types. Timestamps are RFC 3339 text in UTC (as sqlx writes them, so they compare in
-- time order), uuids 16-byte blobs, JSON text, booleans 0/1.

-- The event log. One connection writes (see projections::db::SqliteDb), so `position`
-- is handed out in commit order and is the log's global order by itself. `hash` chains
-- each event to its record's previous one, computed by the writer exactly as
-- PostgreSQL's `events_chain_hash` trigger computes it (src/audit/chain.rs).
CREATE TABLE events
(
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    sequence       INTEGER NOT NULL CHECK (sequence >= 0),
    event_type     TEXT    NOT NULL,
    event_version  TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    recorded_at    TEXT    NOT NULL,
    hash           BLOB    NOT NULL,
    UNIQUE (aggregate_type, aggregate_id, sequence)
);

-- The log is append-only: history that can be rewritten cannot be audited. (SQLite has
-- no TRUNCATE; a DELETE without WHERE runs the trigger too.)
CREATE TRIGGER events_no_update
    BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only: UPDATE on events is not allowed');
END;

CREATE TRIGGER events_no_delete
    BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only: DELETE on events is not allowed');
END;

-- Durable positions of the log's subscribers; on SQLite `transaction_id` equals
-- `position`.
CREATE TABLE subscription_checkpoints
(
    name           TEXT PRIMARY KEY,
    transaction_id INTEGER NOT NULL DEFAULT 0,
    position       INTEGER NOT NULL DEFAULT 0,
    updated_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);

-- Number sequences (PostgreSQL's `ticket_numbers`, `project_ids`, `asset_ids`): a number
-- taken is never handed out again.
CREATE TABLE sequences
(
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

INSERT INTO sequences (name, value)
VALUES ('ticket_numbers', 0),
       ('project_ids', 0),
       ('asset_ids', 0);

CREATE TABLE users
(
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    email      TEXT NOT NULL,
    name       TEXT NOT NULL DEFAULT '',
    role       TEXT NOT NULL CHECK (role IN ('admin', 'manager', 'agent', 'end_user', 'auditor')),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);

CREATE UNIQUE INDEX users_email ON users (lower(email));

-- Tokens are stored as the SHA-256 digest of the secret and looked up by it.
CREATE TABLE api_tokens
(
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    name       TEXT    NOT NULL DEFAULT '',
    digest     BLOB    NOT NULL UNIQUE,
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    revoked_at TEXT
);

-- Read models of tickets, kept by the `tickets` projection (rebuildable).
CREATE TABLE ticket_views
(
    number          INTEGER PRIMARY KEY,
    aggregate_id    TEXT    NOT NULL UNIQUE,
    title           TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    priority        TEXT    NOT NULL,
    reporter        TEXT    NOT NULL,
    assignee        TEXT,
    project_id      INTEGER,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    state           TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    next_sla_due_at TEXT
);

CREATE INDEX ticket_views_status ON ticket_views (status);
CREATE INDEX ticket_views_priority ON ticket_views (priority);
CREATE INDEX ticket_views_reporter ON ticket_views (lower(reporter));
CREATE INDEX ticket_views_assignee ON ticket_views (lower(assignee));
CREATE INDEX ticket_views_project ON ticket_views (project_id);
CREATE INDEX ticket_views_next_sla_due ON ticket_views (next_sla_due_at)
    WHERE next_sla_due_at IS NOT NULL;

CREATE TABLE ticket_comments
(
    id            BLOB PRIMARY KEY,
    ticket_number INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    author        TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    visibility    TEXT    NOT NULL,
    created_at    TEXT    NOT NULL,
    edited_at     TEXT
);

CREATE INDEX ticket_comments_ticket ON ticket_comments (ticket_number, seq);

CREATE TABLE ticket_history
(
    ticket_number INTEGER NOT NULL,
    sequence      INTEGER NOT NULL,
    event         TEXT    NOT NULL,
    recorded_at   TEXT    NOT NULL,
    actor         TEXT    NOT NULL,
    changes       TEXT    NOT NULL,
    internal      INTEGER NOT NULL,
    PRIMARY KEY (ticket_number, sequence)
);

-- Projects and assets: unique keys and tags are reserved before their record is written.
CREATE TABLE project_keys
(
    key        TEXT PRIMARY KEY,
    project_id INTEGER NOT NULL UNIQUE
);

CREATE TABLE asset_tags
(
    tag      TEXT PRIMARY KEY,
    asset_id INTEGER NOT NULL UNIQUE
);

CREATE TABLE project_views
(
    id          INTEGER PRIMARY KEY,
    key         TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL,
    lead        TEXT,
    archived    INTEGER NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    state       TEXT    NOT NULL
);

CREATE INDEX project_views_key ON project_views (key);

CREATE TABLE project_history
(
    project_id  INTEGER NOT NULL,
    sequence    INTEGER NOT NULL,
    event       TEXT    NOT NULL,
    recorded_at TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    changes     TEXT    NOT NULL,
    PRIMARY KEY (project_id, sequence)
);

CREATE TABLE asset_views
(
    id         INTEGER PRIMARY KEY,
    tag        TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    serial     TEXT    NOT NULL,
    owner      TEXT,
    status     TEXT    NOT NULL,
    location   TEXT    NOT NULL,
    archived   INTEGER NOT NULL,
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    state      TEXT    NOT NULL
);

CREATE INDEX asset_views_tag ON asset_views (upper(tag));
CREATE INDEX asset_views_owner ON asset_views (lower(owner));

CREATE TABLE asset_history
(
    asset_id    INTEGER NOT NULL,
    sequence    INTEGER NOT NULL,
    event       TEXT    NOT NULL,
    recorded_at TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    changes     TEXT    NOT NULL,
    PRIMARY KEY (asset_id, sequence)
);

-- Inbound email: every message received is kept raw with what became of it, so that a
-- replayed message is ingested once, a dropped one says why, and replies can be threaded
-- through the Message-IDs of earlier messages. Attachments are kept in the database.
CREATE TABLE inbound_messages
(
    id            bigserial PRIMARY KEY,
    -- The Message-ID without angle brackets, or `sha256-<hex>@arctyk.invalid` when the
    -- message has none: a message is ingested once.
    message_id    text        NOT NULL UNIQUE,
    sender        text        NOT NULL DEFAULT '',
    subject       text        NOT NULL DEFAULT '',
    -- `cli` or `http`.
    received_via  text        NOT NULL,
    -- `received` while being processed, then `ticket_created`, `commented` or `dropped`.
    outcome       text        NOT NULL DEFAULT 'received',
    -- Why a message was dropped (`auto_submitted`, `precedence_bulk`, `rate_limited` …)
    -- or what was left out of it (attachments over the limits).
    reason        text,
    ticket_number bigint,
    comment_id    uuid,
    raw           bytea       NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX inbound_messages_sender ON inbound_messages (lower(sender), received_at);
CREATE INDEX inbound_messages_ticket ON inbound_messages (ticket_number);

CREATE TABLE inbound_attachments
(
    id                 uuid PRIMARY KEY,
    inbound_message_id bigint      NOT NULL REFERENCES inbound_messages (id) ON DELETE CASCADE,
    ticket_number      bigint      NOT NULL,
    comment_id         uuid,
    filename           text        NOT NULL,
    content_type       text        NOT NULL,
    size_bytes         bigint      NOT NULL,
    sha256             text        NOT NULL,
    content            bytea       NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX inbound_attachments_ticket ON inbound_attachments (ticket_number);

-- Read models of tickets, kept by the `tickets` projection from the event log. They can
-- be dropped and rebuilt at any time (`arctyk projections rebuild`).

CREATE TABLE ticket_views
(
    number              bigint PRIMARY KEY,
    aggregate_id        text        NOT NULL UNIQUE,
    title               text        NOT NULL,
    description         text        NOT NULL,
    status              text        NOT NULL,
    priority            text        NOT NULL,
    reporter            text        NOT NULL,
    assignee            text,
    project_id          bigint,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    version             bigint      NOT NULL,
    -- the whole ticket as the domain's `apply` made it
    state               jsonb       NOT NULL,
    -- the ticket as the API shows it, ready to send
    body                json        NOT NULL
);

CREATE INDEX ticket_views_status ON ticket_views (status);
CREATE INDEX ticket_views_priority ON ticket_views (priority);
CREATE INDEX ticket_views_reporter ON ticket_views (lower(reporter));
CREATE INDEX ticket_views_assignee ON ticket_views (lower(assignee));
CREATE INDEX ticket_views_project ON ticket_views (project_id);

CREATE TABLE ticket_comments
(
    id            uuid PRIMARY KEY,
    ticket_number bigint      NOT NULL,
    seq           bigint      NOT NULL,
    author        text        NOT NULL,
    body          text        NOT NULL,
    visibility    text        NOT NULL,
    created_at    timestamptz NOT NULL,
    edited_at     timestamptz
);

CREATE INDEX ticket_comments_ticket ON ticket_comments (ticket_number, seq);

CREATE TABLE ticket_history
(
    ticket_number bigint      NOT NULL,
    sequence      bigint      NOT NULL,
    event         text        NOT NULL,
    recorded_at   timestamptz NOT NULL,
    actor         text        NOT NULL,
    changes       jsonb       NOT NULL,
    internal      boolean     NOT NULL,
    PRIMARY KEY (ticket_number, sequence)
);

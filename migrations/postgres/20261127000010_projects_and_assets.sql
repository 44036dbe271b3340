-- Projects and assets.
--
-- Write side: ids come from sequences (the aggregate id is the number), and project keys
-- and asset tags are reserved here before the creating event is written, so two
-- concurrent creations cannot both take one key. Reservations are not read models: a
-- rebuild leaves them alone.
CREATE SEQUENCE project_ids AS bigint START 1;
CREATE SEQUENCE asset_ids AS bigint START 1;

CREATE TABLE project_keys
(
    key        text PRIMARY KEY,          -- upper-case, as the project shows it
    project_id bigint NOT NULL UNIQUE
);

CREATE TABLE asset_tags
(
    tag      text PRIMARY KEY,            -- upper-cased: tags are unique regardless of case
    asset_id bigint NOT NULL UNIQUE
);

-- Read models kept by the `catalog` projection from the event log. They can be dropped
-- and rebuilt at any time (`arctyk projections rebuild`).
CREATE TABLE project_views
(
    id           bigint PRIMARY KEY,
    key          text        NOT NULL,
    name         text        NOT NULL,
    description  text        NOT NULL,
    lead         text,
    archived     boolean     NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    version      bigint      NOT NULL,
    -- the whole project as the domain's `apply` made it
    state        jsonb       NOT NULL
);

CREATE INDEX project_views_key ON project_views (key);

CREATE TABLE project_history
(
    project_id  bigint      NOT NULL,
    sequence    bigint      NOT NULL,
    event       text        NOT NULL,
    recorded_at timestamptz NOT NULL,
    actor       text        NOT NULL,
    changes     jsonb       NOT NULL,
    PRIMARY KEY (project_id, sequence)
);

CREATE TABLE asset_views
(
    id          bigint PRIMARY KEY,
    tag         text        NOT NULL,
    name        text        NOT NULL,
    kind        text        NOT NULL,
    serial      text        NOT NULL,
    owner       text,
    status      text        NOT NULL,
    location    text        NOT NULL,
    archived    boolean     NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    version     bigint      NOT NULL,
    -- the whole asset as the domain's `apply` made it
    state       jsonb       NOT NULL
);

CREATE INDEX asset_views_tag ON asset_views (upper(tag));
CREATE INDEX asset_views_owner ON asset_views (lower(owner));

CREATE TABLE asset_history
(
    asset_id    bigint      NOT NULL,
    sequence    bigint      NOT NULL,
    event       text        NOT NULL,
    recorded_at timestamptz NOT NULL,
    actor       text        NOT NULL,
    changes     jsonb       NOT NULL,
    PRIMARY KEY (asset_id, sequence)
);

-- `GET /api/assets/{id}/tickets/` looks tickets up by the assets they name.
CREATE INDEX ticket_views_asset_ids ON ticket_views USING gin ((state -> 'asset_ids'));

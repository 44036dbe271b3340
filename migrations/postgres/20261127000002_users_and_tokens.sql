CREATE TABLE users
(
    id         bigserial PRIMARY KEY,
    email      text        NOT NULL,
    name       text        NOT NULL DEFAULT '',
    role       text        NOT NULL CHECK (role IN ('admin', 'manager', 'agent', 'end_user')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_email ON users (lower(email));

-- Tokens are stored as the SHA-256 digest of the secret and looked up by it.
CREATE TABLE api_tokens
(
    id         bigserial PRIMARY KEY,
    user_id    bigint      NOT NULL REFERENCES users (id),
    name       text        NOT NULL DEFAULT '',
    digest     bytea       NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

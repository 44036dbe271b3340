-- Secret rotation: the secret replaced by the last rotation keeps signing, alongside the
-- new one, until `previous_secret_expires_at`.
ALTER TABLE webhook_subscriptions
    ADD COLUMN previous_secret            text,
    ADD COLUMN previous_secret_expires_at timestamptz;

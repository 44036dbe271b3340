-- Auditors: read everything, change nothing (enforced by the API, see src/http/extract.rs).
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('admin', 'manager', 'agent', 'end_user', 'auditor'));

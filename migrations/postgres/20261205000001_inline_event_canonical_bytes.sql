-- `event_canonical_bytes` is STABLE, not IMMUTABLE: its body calls `convert_to`, which is
-- STABLE, and PostgreSQL inlines a SQL function only when its body is no more volatile
-- than the function says it is. Declared IMMUTABLE it was not inlined, so the hash
-- trigger ran it as a separate SQL function, parsed and planned again in every appending
-- transaction (about a fifth of an append's cost). Inlined, it is planned once per
-- connection with the trigger's expression. The bytes it gives are the same.
ALTER FUNCTION event_canonical_bytes(text, text, bigint, text, text, json, json) STABLE;

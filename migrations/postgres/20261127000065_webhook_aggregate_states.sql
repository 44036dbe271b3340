-- The webhook enqueuer keeps its copy of every aggregate whose events it publishes
-- (tickets, projects, assets), not only of tickets. Aggregate ids are unique per type
-- only (ticket 3 and project 3 both exist), so the type is part of the key.

ALTER TABLE webhook_ticket_states RENAME TO webhook_aggregate_states;
ALTER TABLE webhook_aggregate_states
    ADD COLUMN aggregate_type text NOT NULL DEFAULT 'Ticket';
ALTER TABLE webhook_aggregate_states
    ALTER COLUMN aggregate_type DROP DEFAULT,
    DROP CONSTRAINT webhook_ticket_states_pkey,
    ADD PRIMARY KEY (aggregate_type, aggregate_id);

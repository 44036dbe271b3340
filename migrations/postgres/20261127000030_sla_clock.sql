-- The SLA clock: each ticket's earliest deadline that can still be breached (unmet,
-- unbreached, clock running), so the SLA clock finds due tickets with an index scan.
-- Kept by the `tickets` projection; NULL when nothing can fall due.

ALTER TABLE ticket_views ADD COLUMN next_sla_due_at timestamptz;

CREATE INDEX ticket_views_next_sla_due ON ticket_views (next_sla_due_at)
    WHERE next_sla_due_at IS NOT NULL;

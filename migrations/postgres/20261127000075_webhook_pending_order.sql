-- Webhook heads are claimed oldest first: the worker walks pending deliveries in id order
-- and stops as soon as it has enough heads. Ordering by due time instead made it sort
-- every pending delivery on each claim, as a replay's deliveries are all due at once.
DROP INDEX webhook_deliveries_due;
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (id) WHERE status = 'pending';

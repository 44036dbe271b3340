//! Webhooks: subscriptions, the enqueuer that turns ticket events into durable
//! per-(subscription, ticket) delivery queues, and the worker that sends them in order.
//!
//! The ordering promise: for one subscription and one ticket, the delivery of event
//! `sequence = k + 1` is not attempted before event `k` was answered 2xx or skipped by an
//! admin. The enqueuer writes deliveries in the same transaction as its checkpoint, so a
//! crash neither loses nor doubles one; the worker only ever sends the head of a queue.
//!
//! Both backends keep this promise. On PostgreSQL several processes share the
//! queues (leases taken with `SKIP LOCKED`, workers woken by `NOTIFY`); on SQLite one
//! process serves them, its one writer connection serialises claims, and writers wake
//! the worker in-process.

pub mod deliver;
pub mod enqueue;
pub mod replay;
pub mod send;
pub mod store;
pub mod target;

pub use deliver::{WebhookDeliveryWorker, WEBHOOKS_CHANNEL};
pub use enqueue::WebhookEnqueuer;
pub use send::{http_client, DeliverySettings};
pub use store::WebhookStore;

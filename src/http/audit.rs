//! `GET /api/tickets/{id}/verify`: one ticket's hash chain checked (admins and auditors).

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{AppError, Result};
use super::extract::{ticket_number, Caller};
use super::ApiState;
use crate::audit::verify::verify_record;
use crate::store::event_feed::EventFeed;

pub fn router() -> Router<ApiState> {
    Router::new().route("/tickets/{id}/verify", get(verify_ticket))
}

/// A ticket's history checked against its hashes.
#[derive(Debug, Serialize, ToSchema)]
pub struct TicketVerification {
    /// The ticket's key, e.g. `TKT-000123`.
    pub ticket: String,
    /// How many events the ticket has.
    pub events: usize,
    /// Whether every event's stored hash matches the one recomputed from its data and its
    /// predecessor's hash, and the sequences run 1 to `events` without a gap.
    pub valid: bool,
    /// The first event whose recorded data or hash changed.
    pub first_invalid_sequence: Option<i64>,
    /// Missing sequences.
    pub gaps: Vec<SequenceGap>,
    /// The stored hash (hex) of the ticket's last event: the value that pins its whole
    /// history; keep it to compare later.
    pub last_hash: Option<String>,
}

/// Sequences `from` to `to` (inclusive) are missing.
#[derive(Debug, Serialize, ToSchema)]
pub struct SequenceGap {
    pub from: i64,
    pub to: i64,
}

#[utoipa::path(get, path = "/api/tickets/{id}/verify", tag = "tickets",
    description = "Recomputes the hash of each of the ticket's events from the stored event \
and its predecessor's hash (README, \"Tamper evidence\") and checks that its sequences run \
from 1 without a gap. Admins and auditors only. The whole log, with its global checkpoints, \
is verified by `arctyk audit verify`.",
    params(("id" = String, Path, description = "Ticket number, e.g. 123 or TKT-000123")),
    responses((status = 200, body = TicketVerification), (status = 401),
        (status = 403, description = "Neither admin nor auditor"),
        (status = 404, description = "No such ticket")))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn verify_ticket(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TicketVerification>> {
    if !caller.user.role.reads_everything() {
        return Err(AppError::Forbidden(
            "Only admins and auditors verify the event log".to_owned(),
        ));
    }
    let number = ticket_number(&id)?;
    let events = EventFeed::new(state.database.clone())
        .aggregate("Ticket", &number.to_string())
        .await?;
    if events.is_empty() {
        return Err(AppError::not_found_ticket());
    }
    let verification = verify_record(&events);
    Ok(Json(TicketVerification {
        ticket: format!("TKT-{number:06}"),
        events: verification.events,
        valid: verification.is_valid(),
        first_invalid_sequence: verification.first_invalid_sequence,
        gaps: verification
            .gaps
            .iter()
            .map(|&(from, to)| SequenceGap { from, to })
            .collect(),
        last_hash: verification.last_hash,
    }))
}

//! The SLA clock: records `ticket.sla_breached` when a ticket's response or resolution
//! deadline passes unmet.
//!
//! The `tickets` projection keeps each ticket's earliest deadline that can still be
//! breached (`next_sla_due_at`: NULL while the clock is paused, once met or breached, or
//! when the ticket is done). At every tick [`SlaClockWorker`] asks for the tickets whose
//! deadline is at or before the injected clock's `now` and runs `RecordSlaBreaches` on
//! each. The aggregate decides, from its own events, what is due: a breach is recorded at
//! most once per deadline however often, and by however many processes, the command
//! runs. The first tick runs at start-up, so a deadline that passed while the server was
//! down is recorded then.

use std::sync::Arc;
use std::time::Duration;

use arctyk_domain::{TicketCommand, SYSTEM_ACTOR};
use tokio::sync::{watch, Notify};

use crate::clock::Clock;
use crate::tickets::{RequestContext, ServiceError, TicketService};

/// How often the worker looks for deadlines that have passed.
pub const TICK: Duration = Duration::from_millis(250);
/// Tickets handled per query; the rest are picked up at once by the next pass.
const BATCH: i64 = 200;

pub struct SlaClockWorker {
    tickets: TicketService,
    clock: Arc<dyn Clock>,
    tick: Duration,
    wake: Arc<Notify>,
}

impl SlaClockWorker {
    pub fn new(tickets: TicketService, clock: Arc<dyn Clock>) -> Self {
        Self {
            tickets,
            clock,
            tick: TICK,
            wake: Arc::default(),
        }
    }

    /// Wakes the worker before its next tick (e.g. after moving a test clock).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Records every breach that has fallen due, until `shutdown` fires.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.record_due().await {
                // A full batch: more may be waiting.
                Ok(n) if n as i64 >= BATCH => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "the SLA clock could not record breaches"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.tick) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One pass: records the breaches of every ticket whose next deadline has passed.
    /// Returns how many tickets were due.
    #[tracing::instrument(skip_all)]
    pub async fn record_due(&self) -> Result<usize, ServiceError> {
        let due = self
            .tickets
            .reads()
            .sla_due(self.clock.now(), BATCH)
            .await?;
        let context = RequestContext::default();
        let mut recorded = 0;
        for &number in &due {
            let command = TicketCommand::RecordSlaBreaches {
                at: self.clock.now(),
            };
            match self
                .tickets
                .execute(number, command, SYSTEM_ACTOR, &context)
                .await
            {
                Ok(_) => recorded += 1,
                // Without the database nothing else can succeed either: try again later.
                Err(error @ ServiceError::Unavailable(_)) => return Err(error),
                // One ticket's failure must not hold the others' breaches back.
                Err(error) => {
                    tracing::warn!(number, %error, "the SLA clock could not record a breach")
                }
            }
        }
        // Only a full batch of successes asks for another pass at once; failures wait
        // for the next tick.
        Ok(recorded)
    }
}

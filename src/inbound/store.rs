//! Persistence of inbound mail: the raw messages with what became of them, and their
//! attachments.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Row};
use utoipa::ToSchema;
use uuid::Uuid;

/// What became of a message that was ingested before.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub outcome: String,
    pub reason: Option<String>,
    pub ticket_number: Option<i64>,
    pub comment_id: Option<Uuid>,
}

/// An attachment as listed on its ticket.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttachmentInfo {
    pub id: Uuid,
    pub ticket_id: i64,
    /// The comment the attachment came with; none when it came with the ticket.
    pub comment_id: Option<Uuid>,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}

/// A new attachment to store.
pub struct NewAttachment<'a> {
    pub inbound_message_id: i64,
    pub ticket_number: i64,
    pub comment_id: Option<Uuid>,
    pub filename: &'a str,
    pub content_type: &'a str,
    pub sha256: &'a str,
    pub content: &'a [u8],
}

#[derive(Clone)]
pub struct InboundStore {
    pool: PgPool,
}

const ATTACHMENT_COLUMNS: &str =
    "id, ticket_number, comment_id, filename, content_type, size_bytes, sha256, created_at";

fn attachment_from_row(row: &sqlx::postgres::PgRow) -> Result<AttachmentInfo, sqlx::Error> {
    Ok(AttachmentInfo {
        id: row.try_get("id")?,
        ticket_id: row.try_get("ticket_number")?,
        comment_id: row.try_get("comment_id")?,
        filename: row.try_get("filename")?,
        content_type: row.try_get("content_type")?,
        size: row.try_get("size_bytes")?,
        sha256: row.try_get("sha256")?,
        created_at: row.try_get("created_at")?,
    })
}

impl InboundStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Records a message as received; `None` when one with this Message-ID already was.
    /// A claim left `received` for five minutes (its process died mid-way) is taken over,
    /// so that the MTA's retry is not lost: at least once rather than at most once.
    pub async fn claim(
        &self,
        message_id: &str,
        sender: &str,
        subject: &str,
        via: &str,
        raw: &[u8],
    ) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar(
            "INSERT INTO inbound_messages (message_id, sender, subject, received_via, raw)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (message_id) DO UPDATE SET received_at = now()
              WHERE inbound_messages.outcome = 'received'
                AND inbound_messages.received_at < now() - interval '5 minutes'
             RETURNING id",
        )
        .bind(message_id)
        .bind(sender)
        .bind(subject)
        .bind(via)
        .bind(raw)
        .fetch_optional(&self.pool)
        .await
    }

    /// What became of the message with this Message-ID.
    pub async fn recorded(&self, message_id: &str) -> Result<Option<Recorded>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT outcome, reason, ticket_number, comment_id
               FROM inbound_messages WHERE message_id = $1",
        )
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Recorded {
                outcome: row.try_get("outcome")?,
                reason: row.try_get("reason")?,
                ticket_number: row.try_get("ticket_number")?,
                comment_id: row.try_get("comment_id")?,
            })
        })
        .transpose()
    }

    /// Records what became of a claimed message.
    pub async fn finish(&self, id: i64, recorded: &Recorded) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE inbound_messages
                SET outcome = $2, reason = $3, ticket_number = $4, comment_id = $5
              WHERE id = $1",
        )
        .bind(id)
        .bind(&recorded.outcome)
        .bind(&recorded.reason)
        .bind(recorded.ticket_number)
        .bind(recorded.comment_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a claimed message whose processing failed, so that the sender's retry is
    /// processed afresh.
    pub async fn release(&self, id: i64) -> Result<(), sqlx::Error> {
        // The row stays, with the ticket number it may have reserved, so that the retry
        // finishes this message's ticket instead of opening another; it is claimable at
        // once.
        sqlx::query(
            "UPDATE inbound_messages SET received_at = '-infinity'
              WHERE id = $1 AND outcome = 'received'",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The ticket number of the ticket this message creates: `fresh` the first time,
    /// the number reserved by an earlier attempt after a failure or a crash.
    pub async fn reserve_ticket_number(&self, id: i64, fresh: i64) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "UPDATE inbound_messages SET ticket_number = coalesce(ticket_number, $2)
              WHERE id = $1 RETURNING ticket_number",
        )
        .bind(id)
        .bind(fresh)
        .fetch_one(&self.pool)
        .await
    }

    /// Forgets the attachments an earlier, failed attempt stored for this message.
    pub async fn drop_attachments(&self, inbound_message_id: i64) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM inbound_attachments WHERE inbound_message_id = $1")
            .bind(inbound_message_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Messages from `sender` received in the last hour, other than `except`.
    pub async fn recent_from(&self, sender: &str, except: i64) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT count(*) FROM inbound_messages
              WHERE lower(sender) = lower($1) AND id <> $2
                AND received_at > now() - interval '1 hour'",
        )
        .bind(sender)
        .bind(except)
        .fetch_one(&self.pool)
        .await
    }

    /// The ticket a received message became or was added to.
    pub async fn ticket_of_message(&self, message_id: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT ticket_number FROM inbound_messages
              WHERE message_id = $1 AND ticket_number IS NOT NULL",
        )
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn add_attachment(&self, new: NewAttachment<'_>) -> Result<Uuid, sqlx::Error> {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO inbound_attachments
                (id, inbound_message_id, ticket_number, comment_id, filename, content_type,
                 size_bytes, sha256, content)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(new.inbound_message_id)
        .bind(new.ticket_number)
        .bind(new.comment_id)
        .bind(new.filename)
        .bind(new.content_type)
        .bind(new.content.len() as i64)
        .bind(new.sha256)
        .bind(new.content)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    pub async fn attachments_of(&self, ticket: i64) -> Result<Vec<AttachmentInfo>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {ATTACHMENT_COLUMNS} FROM inbound_attachments
              WHERE ticket_number = $1 ORDER BY created_at, filename"
        ))
        .bind(ticket)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attachment_from_row).collect()
    }

    /// One attachment with its content.
    pub async fn attachment(
        &self,
        id: Uuid,
    ) -> Result<Option<(AttachmentInfo, Vec<u8>)>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT {ATTACHMENT_COLUMNS}, content FROM inbound_attachments WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((attachment_from_row(&row)?, row.try_get("content")?)))
            .transpose()
    }
}

//! Persistence of inbound mail: the raw messages with what became of them, and their
//! attachments. On SQLite the times that are compared (`received_at`, an attachment's
//! `created_at`) are this process's clock, where PostgreSQL takes its own.

use arctyk_projections::{on_read, on_write, Db};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// What became of a message that was ingested before.
#[derive(Debug, Clone, sqlx::FromRow)]
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
    db: Db,
}

/// How long a claim may stay `received` before another attempt takes it over.
const CLAIM_TIMEOUT: TimeDelta = TimeDelta::minutes(5);

/// The window of the per-sender rate limit.
const RATE_WINDOW: TimeDelta = TimeDelta::hours(1);

const ATTACHMENT_COLUMNS: &str =
    "id, ticket_number, comment_id, filename, content_type, size_bytes, sha256, created_at";

/// An attachment as `inbound_attachments` stores it, read with [`ATTACHMENT_COLUMNS`].
#[derive(sqlx::FromRow)]
struct AttachmentRow {
    id: Uuid,
    ticket_number: i64,
    comment_id: Option<Uuid>,
    filename: String,
    content_type: String,
    size_bytes: i64,
    sha256: String,
    created_at: DateTime<Utc>,
}

impl From<AttachmentRow> for AttachmentInfo {
    fn from(row: AttachmentRow) -> Self {
        AttachmentInfo {
            id: row.id,
            ticket_id: row.ticket_number,
            comment_id: row.comment_id,
            filename: row.filename,
            content_type: row.content_type,
            size: row.size_bytes,
            sha256: row.sha256,
            created_at: row.created_at,
        }
    }
}

/// An attachment with its content.
#[derive(sqlx::FromRow)]
struct AttachmentContentRow {
    #[sqlx(flatten)]
    info: AttachmentRow,
    content: Vec<u8>,
}

impl InboundStore {
    pub fn new(db: impl Into<Db>) -> Self {
        Self { db: db.into() }
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
        match &self.db {
            Db::Postgres(pool) => {
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
                .fetch_optional(pool)
                .await
            }
            Db::Sqlite(sqlite) => {
                let now = Utc::now();
                sqlx::query_scalar(
                    "INSERT INTO inbound_messages
                        (message_id, sender, subject, received_via, raw, received_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (message_id) DO UPDATE SET received_at = excluded.received_at
                      WHERE inbound_messages.outcome = 'received'
                        AND inbound_messages.received_at < $7
                     RETURNING id",
                )
                .bind(message_id)
                .bind(sender)
                .bind(subject)
                .bind(via)
                .bind(raw)
                .bind(now)
                .bind(now - CLAIM_TIMEOUT)
                .fetch_optional(&sqlite.write)
                .await
            }
        }
    }

    /// What became of the message with this Message-ID.
    pub async fn recorded(&self, message_id: &str) -> Result<Option<Recorded>, sqlx::Error> {
        on_read!(&self.db, pool => {
            sqlx::query_as(
                "SELECT outcome, reason, ticket_number, comment_id
                   FROM inbound_messages WHERE message_id = $1",
            )
            .bind(message_id)
            .fetch_optional(pool)
            .await
        })
    }

    /// Records what became of a claimed message.
    pub async fn finish(&self, id: i64, recorded: &Recorded) -> Result<(), sqlx::Error> {
        on_write!(&self.db, pool => {
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
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Forgets a claimed message whose processing failed, so that the sender's retry is
    /// processed afresh.
    pub async fn release(&self, id: i64) -> Result<(), sqlx::Error> {
        // The row stays, with the ticket number it may have reserved, so that the retry
        // finishes this message's ticket instead of opening another; it is claimable at
        // once (received before any claim timeout, and outside any rate window).
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query(
                    "UPDATE inbound_messages SET received_at = '-infinity'
                      WHERE id = $1 AND outcome = 'received'",
                )
                .bind(id)
                .execute(pool)
                .await?;
            }
            Db::Sqlite(sqlite) => {
                sqlx::query(
                    "UPDATE inbound_messages SET received_at = $2
                      WHERE id = $1 AND outcome = 'received'",
                )
                .bind(id)
                .bind(DateTime::<Utc>::UNIX_EPOCH)
                .execute(&sqlite.write)
                .await?;
            }
        }
        Ok(())
    }

    /// The ticket number of the ticket this message creates: `fresh` the first time,
    /// the number reserved by an earlier attempt after a failure or a crash.
    pub async fn reserve_ticket_number(&self, id: i64, fresh: i64) -> Result<i64, sqlx::Error> {
        on_write!(&self.db, pool => {
            sqlx::query_scalar(
                "UPDATE inbound_messages SET ticket_number = coalesce(ticket_number, $2)
                  WHERE id = $1 RETURNING ticket_number",
            )
            .bind(id)
            .bind(fresh)
            .fetch_one(pool)
            .await
        })
    }

    /// Forgets the attachments an earlier, failed attempt stored for this message.
    pub async fn drop_attachments(&self, inbound_message_id: i64) -> Result<(), sqlx::Error> {
        on_write!(&self.db, pool => {
            sqlx::query("DELETE FROM inbound_attachments WHERE inbound_message_id = $1")
                .bind(inbound_message_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Messages from `sender` received in the last hour, other than `except`.
    pub async fn recent_from(&self, sender: &str, except: i64) -> Result<i64, sqlx::Error> {
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT count(*) FROM inbound_messages
                      WHERE lower(sender) = lower($1) AND id <> $2
                        AND received_at > now() - interval '1 hour'",
                )
                .bind(sender)
                .bind(except)
                .fetch_one(pool)
                .await
            }
            Db::Sqlite(sqlite) => {
                sqlx::query_scalar(
                    "SELECT count(*) FROM inbound_messages
                      WHERE lower(sender) = lower($1) AND id <> $2
                        AND received_at > $3",
                )
                .bind(sender)
                .bind(except)
                .bind(Utc::now() - RATE_WINDOW)
                .fetch_one(&sqlite.read)
                .await
            }
        }
    }

    /// The ticket a received message became or was added to.
    pub async fn ticket_of_message(&self, message_id: &str) -> Result<Option<i64>, sqlx::Error> {
        on_read!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT ticket_number FROM inbound_messages
                  WHERE message_id = $1 AND ticket_number IS NOT NULL",
            )
            .bind(message_id)
            .fetch_optional(pool)
            .await
        })
    }

    pub async fn add_attachment(&self, new: NewAttachment<'_>) -> Result<Uuid, sqlx::Error> {
        let id = Uuid::new_v4();
        match &self.db {
            Db::Postgres(pool) => {
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
                .execute(pool)
                .await?;
            }
            Db::Sqlite(sqlite) => {
                sqlx::query(
                    "INSERT INTO inbound_attachments
                        (id, inbound_message_id, ticket_number, comment_id, filename, content_type,
                         size_bytes, sha256, content, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
                .bind(Utc::now())
                .execute(&sqlite.write)
                .await?;
            }
        }
        Ok(id)
    }

    pub async fn attachments_of(&self, ticket: i64) -> Result<Vec<AttachmentInfo>, sqlx::Error> {
        let sql = format!(
            "SELECT {ATTACHMENT_COLUMNS} FROM inbound_attachments
              WHERE ticket_number = $1 ORDER BY created_at, filename"
        );
        let rows: Vec<AttachmentRow> = on_read!(&self.db, pool => {
            sqlx::query_as(&sql).bind(ticket).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(AttachmentInfo::from).collect())
    }

    /// One attachment with its content.
    pub async fn attachment(
        &self,
        id: Uuid,
    ) -> Result<Option<(AttachmentInfo, Vec<u8>)>, sqlx::Error> {
        let sql =
            format!("SELECT {ATTACHMENT_COLUMNS}, content FROM inbound_attachments WHERE id = $1");
        let row: Option<AttachmentContentRow> = on_read!(&self.db, pool => {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        Ok(row.map(|row| (row.info.into(), row.content)))
    }
}

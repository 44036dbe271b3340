//! Users and their API tokens.

use arctyk_domain::Role;
use sqlx::{PgPool, Row};

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: Role,
}

fn user_from_row(row: &sqlx::postgres::PgRow) -> Result<User, sqlx::Error> {
    let role: String = row.try_get("role")?;
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: role
            .parse()
            .map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
    })
}

#[derive(Clone)]
pub struct Users {
    pool: PgPool,
}

impl Users {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Creates the user, or sets the role and name of the one with this email.
    pub async fn upsert(&self, email: &str, name: &str, role: Role) -> Result<User, sqlx::Error> {
        let row = sqlx::query(
            "INSERT INTO users (email, name, role) VALUES ($1, $2, $3)
             ON CONFLICT (lower(email)) DO UPDATE
                SET role = excluded.role,
                    name = CASE WHEN excluded.name = '' THEN users.name ELSE excluded.name END
             RETURNING id, email, name, role",
        )
        .bind(email)
        .bind(name)
        .bind(role.as_str())
        .fetch_one(&self.pool)
        .await?;
        user_from_row(&row)
    }

    /// The user with this email, created as an end user on first contact (inbound mail);
    /// an existing user keeps their role.
    pub async fn create_end_user_if_absent(
        &self,
        email: &str,
        name: &str,
    ) -> Result<User, sqlx::Error> {
        sqlx::query(
            "INSERT INTO users (email, name, role) VALUES ($1, $2, 'end_user')
             ON CONFLICT (lower(email)) DO NOTHING",
        )
        .bind(email)
        .bind(name)
        .execute(&self.pool)
        .await?;
        self.by_email(email).await?.ok_or(sqlx::Error::RowNotFound)
    }

    pub async fn by_email(&self, email: &str) -> Result<Option<User>, sqlx::Error> {
        let row =
            sqlx::query("SELECT id, email, name, role FROM users WHERE lower(email) = lower($1)")
                .bind(email)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn by_id(&self, id: i64) -> Result<Option<User>, sqlx::Error> {
        let row = sqlx::query("SELECT id, email, name, role FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn add_token(
        &self,
        user_id: i64,
        name: &str,
        digest: &[u8],
    ) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "INSERT INTO api_tokens (user_id, name, digest) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(user_id)
        .bind(name)
        .bind(digest)
        .fetch_one(&self.pool)
        .await
    }

    /// The owner of a live token with this digest.
    pub async fn by_token_digest(&self, digest: &[u8]) -> Result<Option<User>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT u.id, u.email, u.name, u.role
               FROM api_tokens t JOIN users u ON u.id = t.user_id
              WHERE t.digest = $1 AND t.revoked_at IS NULL",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }
}

//! Users and their API tokens.

use arctyk_domain::Role;
use arctyk_projections::{on_read, on_write, Db};
use chrono::{DateTime, Utc};

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: Role,
}

/// A user as `users` stores it.
#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    email: String,
    name: String,
    role: String,
}

impl UserRow {
    fn into_user(self) -> Result<User, sqlx::Error> {
        Ok(User {
            id: self.id,
            email: self.email,
            name: self.name,
            role: self
                .role
                .parse()
                .map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
        })
    }
}

#[derive(Clone)]
pub struct Users {
    db: Db,
}

impl Users {
    pub fn new(db: impl Into<Db>) -> Self {
        Self { db: db.into() }
    }

    /// Creates the user, or sets the role and name of the one with this email.
    pub async fn upsert(&self, email: &str, name: &str, role: Role) -> Result<User, sqlx::Error> {
        let row: UserRow = on_write!(&self.db, pool => {
            sqlx::query_as(
                "INSERT INTO users (email, name, role) VALUES ($1, $2, $3)
                 ON CONFLICT (lower(email)) DO UPDATE
                    SET role = excluded.role,
                        name = CASE WHEN excluded.name = '' THEN users.name ELSE excluded.name END
                 RETURNING id, email, name, role",
            )
            .bind(email)
            .bind(name)
            .bind(role.as_str())
            .fetch_one(pool)
            .await?
        });
        row.into_user()
    }

    /// The user with this email, created as an end user on first contact (inbound mail);
    /// an existing user keeps their role.
    pub async fn create_end_user_if_absent(
        &self,
        email: &str,
        name: &str,
    ) -> Result<User, sqlx::Error> {
        on_write!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO users (email, name, role) VALUES ($1, $2, 'end_user')
                 ON CONFLICT (lower(email)) DO NOTHING",
            )
            .bind(email)
            .bind(name)
            .execute(pool)
            .await?;
        });
        self.by_email(email).await?.ok_or(sqlx::Error::RowNotFound)
    }

    pub async fn by_email(&self, email: &str) -> Result<Option<User>, sqlx::Error> {
        let row: Option<UserRow> = on_read!(&self.db, pool => {
            sqlx::query_as("SELECT id, email, name, role FROM users WHERE lower(email) = lower($1)")
                .bind(email)
                .fetch_optional(pool)
                .await?
        });
        row.map(UserRow::into_user).transpose()
    }

    pub async fn by_id(&self, id: i64) -> Result<Option<User>, sqlx::Error> {
        let row: Option<UserRow> = on_read!(&self.db, pool => {
            sqlx::query_as("SELECT id, email, name, role FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.map(UserRow::into_user).transpose()
    }

    pub async fn add_token(
        &self,
        user_id: i64,
        name: &str,
        digest: &[u8],
    ) -> Result<i64, sqlx::Error> {
        on_write!(&self.db, pool => {
            sqlx::query_scalar(
                "INSERT INTO api_tokens (user_id, name, digest) VALUES ($1, $2, $3) RETURNING id",
            )
            .bind(user_id)
            .bind(name)
            .bind(digest)
            .fetch_one(pool)
            .await
        })
    }

    /// The owner of a live token with this digest.
    pub async fn by_token_digest(&self, digest: &[u8]) -> Result<Option<User>, sqlx::Error> {
        let row: Option<UserRow> = on_read!(&self.db, pool => {
            sqlx::query_as(
                "SELECT u.id, u.email, u.name, u.role
                   FROM api_tokens t JOIN users u ON u.id = t.user_id
                  WHERE t.digest = $1 AND t.revoked_at IS NULL",
            )
            .bind(digest)
            .fetch_optional(pool)
            .await?
        });
        row.map(UserRow::into_user).transpose()
    }
}

/// An API token as stored (its digest, never the secret), for moving users between
/// databases.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredToken {
    pub name: String,
    pub digest: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Users {
    /// Every user, by id.
    pub async fn all(&self) -> Result<Vec<User>, sqlx::Error> {
        let rows: Vec<UserRow> = on_read!(&self.db, pool => {
            sqlx::query_as("SELECT id, email, name, role FROM users ORDER BY id")
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(UserRow::into_user).collect()
    }

    /// The user's tokens, live and revoked.
    pub async fn tokens_of(&self, user_id: i64) -> Result<Vec<StoredToken>, sqlx::Error> {
        on_read!(&self.db, pool => {
            sqlx::query_as(
                "SELECT name, digest, created_at, revoked_at FROM api_tokens
                  WHERE user_id = $1 ORDER BY id",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await
        })
    }

    /// Stores a token taken from another database for `user_id`; one whose digest is
    /// known already is left as it is.
    pub async fn restore_token(
        &self,
        user_id: i64,
        token: &StoredToken,
    ) -> Result<(), sqlx::Error> {
        on_write!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO api_tokens (user_id, name, digest, created_at, revoked_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (digest) DO NOTHING",
            )
            .bind(user_id)
            .bind(&token.name)
            .bind(&token.digest)
            .bind(token.created_at)
            .bind(token.revoked_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}

//! Append-only in depth: `deploy/runtime_role.sql` gives the role `serve` runs as
//! INSERT on the event log but not UPDATE, DELETE or TRUNCATE, which PostgreSQL refuses
//! on permission before any trigger runs; and the server runs as that role on a schema
//! the owner migrated.

/// Database roles and grants: PostgreSQL's own mechanics (a SQLite file has no roles).
mod postgres_only {
    use serde_json::json;
    use sqlx::postgres::PgConnectOptions;
    use sqlx::{ConnectOptions, Connection, PgConnection};

    use crate::helpers::{fresh_database_url, json, spawn_app_with, test_config};

    const GRANTS: &str = include_str!("../../deploy/runtime_role.sql");

    /// The database URL, connecting as `role` instead.
    fn as_role(database_url: &str, role: &str) -> String {
        let mut url = reqwest::Url::parse(database_url).expect("a URL");
        url.set_username(role).expect("a user name");
        url.set_password(None).expect("no password");
        url.to_string()
    }

    async fn connect(url: &str) -> PgConnection {
        let options: PgConnectOptions = url.parse().expect("connect options");
        options.connect().await.expect("connects")
    }

    /// What PostgreSQL answers `statement`, as (SQLSTATE, message).
    async fn refusal(conn: &mut PgConnection, statement: &str) -> (String, String) {
        let error = sqlx::raw_sql(statement)
            .execute(&mut *conn)
            .await
            .expect_err(statement);
        let error = error.as_database_error().expect("a database error");
        (
            error.code().unwrap_or_default().into_owned(),
            error.message().to_owned(),
        )
    }

    #[tokio::test]
    async fn the_runtime_role_appends_to_the_log_but_cannot_rewrite_it_and_serves() {
        let owner_url = fresh_database_url();
        arctyk::db::create_if_missing(&owner_url)
            .await
            .expect("database");
        let mut owner = connect(&owner_url).await;
        let role = format!("arctyk_rt_{}", uuid::Uuid::new_v4().simple());
        sqlx::raw_sql(&format!("CREATE ROLE {role} LOGIN"))
            .execute(&mut owner)
            .await
            .expect("role");
        let output = crate::cli::run_arctyk(&["migrate"], &owner_url, "off").await;
        assert!(output.status.success(), "{output:?}");
        sqlx::raw_sql(&format!("SET arctyk.runtime_role = '{role}'"))
            .execute(&mut owner)
            .await
            .expect("setting");
        sqlx::raw_sql(GRANTS)
            .execute(&mut owner)
            .await
            .expect("the grants apply");
        // Idempotent: run again after every migrate.
        sqlx::raw_sql(GRANTS)
            .execute(&mut owner)
            .await
            .expect("the grants apply twice");

        let runtime_url = as_role(&owner_url, &role);
        let mut runtime = connect(&runtime_url).await;
        sqlx::raw_sql(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                 payload, metadata)
             VALUES ('Probe', 'grants', 1, 'Probed', '1.0', '{}', '{}')",
        )
        .execute(&mut runtime)
        .await
        .expect("the runtime role appends");
        for statement in [
            "UPDATE events SET payload = '{}' WHERE aggregate_type = 'Probe'",
            "DELETE FROM events WHERE aggregate_type = 'Probe'",
            "TRUNCATE events",
            "ALTER TABLE events DISABLE TRIGGER ALL",
            "DROP TABLE events",
        ] {
            let (code, message) = refusal(&mut runtime, statement).await;
            assert_eq!(code, "42501", "{statement}: {message}");
            assert!(
                message.contains("permission denied") || message.contains("must be owner"),
                "{statement} is refused by the grants, not the trigger: {message}"
            );
        }
        let (code, _) = refusal(&mut runtime, "CREATE TABLE sneaky (id int)").await;
        assert_eq!(code, "42501");
        // The owner's attempt reaches the append-only trigger instead.
        let (_, message) = refusal(
            &mut owner,
            "DELETE FROM events WHERE aggregate_type = 'Probe'",
        )
        .await;
        assert!(message.contains("append-only"), "{message}");
        runtime.close().await.expect("closes");

        // The server runs as the runtime role: it sees the schema is current, skips
        // migrating, and writes events, read models and queues.
        let app = spawn_app_with(test_config(&runtime_url)).await;
        let agent = app.agent().await;
        let created = app
            .create_ticket(&agent, json!({"title": "Served by the runtime role"}))
            .await;
        assert_eq!(created["id"], 1);
        let response = app
            .post(
                "/api/tickets/1/transition/",
                &agent,
                &json!({"status": "open", "comment": "On it"}),
            )
            .await;
        assert_eq!(response.status(), 200);
        let history = json(app.get("/api/tickets/1/history/", &agent).await).await;
        assert!(history.as_array().expect("a list").len() >= 2, "{history}");
        app.stop().await;

        // And so do the operator's commands that need no DDL.
        for command in [
            &["projections", "rebuild"][..],
            &[
                "token",
                "create",
                "--email",
                "ops@example.com",
                "--role",
                "agent",
            ],
        ] {
            let output = crate::cli::run_arctyk(command, &runtime_url, "off").await;
            assert!(output.status.success(), "{command:?}: {output:?}");
        }

        let _ = sqlx::raw_sql(&format!("DROP OWNED BY {role}"))
            .execute(&mut owner)
            .await;
    }
}

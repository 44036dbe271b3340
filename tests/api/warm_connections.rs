//! The connections kept between reads of a ticket by its number on PostgreSQL
//! (`arctyk_projections::warm_connections`): only after a read that completed, not for
//! longer than the pool's idle check allows, and never more than a quarter of the pool.

/// PostgreSQL's own mechanics: sqlx's release check is what they spare.
mod postgres_only {
    use std::time::Duration;

    use arctyk_projections::warm_connections::WarmConnections;
    use arctyk_projections::{Db, TicketReads};
    use futures::future::join_all;
    use serde_json::json;

    use crate::helpers::spawn_app;

    #[tokio::test]
    async fn a_connection_is_kept_only_after_a_read_that_completed() {
        let app = spawn_app().await;
        let Db::Postgres(pool) = &app.db else {
            panic!("a PostgreSQL database")
        };
        let warm = WarmConnections::default();

        let mut failing = warm.acquire(pool).await.expect("connection");
        sqlx::query("SELECT 1 / 0")
            .execute(failing.conn())
            .await
            .expect_err("division by zero");
        drop(failing);
        assert_eq!(
            warm.kept(),
            0,
            "a failed read's connection goes back to the pool"
        );

        let mut reading = warm.acquire(pool).await.expect("connection");
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(reading.conn())
            .await
            .expect("read");
        reading.keep();
        assert_eq!(warm.kept(), 1);

        // The next read gets the same connection, as it is.
        let mut next = warm.acquire(pool).await.expect("connection");
        assert_eq!(warm.kept(), 0);
        let again: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(next.conn())
            .await
            .expect("read");
        assert_eq!(again, pid);
        next.keep();

        // Kept longer than the pool's idle check allows, it goes back to the pool.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let held = warm.acquire(pool).await.expect("connection");
        assert_eq!(warm.kept(), 0);
        drop(held);

        // Never more than a quarter of the pool is kept.
        let most = pool.options().get_max_connections() as usize / 4;
        let many = join_all((0..most + 3).map(|_| warm.acquire(pool))).await;
        for conn in many {
            conn.expect("connection").keep();
        }
        assert_eq!(warm.kept(), most);
        app.stop().await;
    }

    #[tokio::test]
    async fn repeated_reads_of_a_ticket_by_number_answer_alike() {
        let app = spawn_app().await;
        let token = app.agent().await;
        app.create_ticket(&token, json!({"title": "Monitor flickers"}))
            .await;
        let reads = TicketReads::new(app.db.clone());
        for _ in 0..3 {
            let row = reads.document(1).await.expect("read").expect("ticket 1");
            assert_eq!(row.version, 1);
        }
        assert_eq!(
            reads.document(2).await.expect("read").map(|r| r.version),
            None
        );
        app.stop().await;
    }
}

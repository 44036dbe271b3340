//! Group commit of the log's appends on PostgreSQL (`arctyk::store::group_append`):
//! commands appending together share one statement and one transaction, each keeps its
//! events together, in order and hash-chained, and a group that cannot land whole is
//! written again command by command, so that only the command that lost a race is refused.

/// PostgreSQL's own mechanics: the group appender exists only there.
mod postgres_only {
    use std::collections::HashSet;

    use arctyk::store::group_append::GroupAppender;
    use cqrs_es::persist::{PersistenceError, SerializedEvent};
    use futures::future::join_all;
    use serde_json::json;

    use crate::helpers::spawn_app;

    /// An event of a record type no subscriber of the server processes.
    fn probe(id: &str, sequence: usize) -> SerializedEvent {
        SerializedEvent {
            aggregate_id: id.to_owned(),
            sequence,
            aggregate_type: "GroupCommitProbe".to_owned(),
            event_type: "Probed".to_owned(),
            event_version: "1.0".to_owned(),
            payload: json!({"Probed": {"id": id, "sequence": sequence}}),
            metadata: json!({"actor": "test@example.com"}),
        }
    }

    /// Each landed command's transaction id, and whether each event's hash chains to
    /// its record's previous event.
    async fn landed(pool: &sqlx::PgPool) -> (Vec<(String, i64, i64, i64)>, bool) {
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT aggregate_id, sequence, transaction_id::text::bigint, position
               FROM events WHERE aggregate_type = 'GroupCommitProbe'
              ORDER BY position",
        )
        .fetch_all(pool)
        .await
        .expect("log read");
        let chained: bool = sqlx::query_scalar(
            "SELECT bool_and(e.hash = sha256(coalesce(p.hash, '') || event_canonical_bytes(
                        e.aggregate_type, e.aggregate_id, e.sequence, e.event_type,
                        e.event_version, e.payload, e.metadata)))
               FROM events e
               LEFT JOIN events p ON p.aggregate_type = e.aggregate_type
                                 AND p.aggregate_id = e.aggregate_id
                                 AND p.sequence = e.sequence - 1
              WHERE e.aggregate_type = 'GroupCommitProbe'",
        )
        .fetch_one(pool)
        .await
        .expect("hashes read");
        (rows, chained)
    }

    // A current-thread runtime: every append below is queued before the appender's
    // writer first runs, so they are written as one group.
    #[tokio::test]
    async fn commands_appending_together_land_in_one_transaction_each_whole_and_in_order() {
        let app = spawn_app().await;
        let appender = GroupAppender::new(app.pg().clone());
        let commands: Vec<Vec<SerializedEvent>> = (0..10)
            .map(|i| {
                let id = format!("r{i}");
                // Every third command appends two events.
                if i % 3 == 0 {
                    vec![probe(&id, 1), probe(&id, 2)]
                } else {
                    vec![probe(&id, 1)]
                }
            })
            .collect();
        let answers = join_all(commands.iter().map(|events| appender.append(events))).await;

        let (rows, chained) = landed(app.pg()).await;
        assert_eq!(rows.len(), 14, "every event landed");
        assert!(
            chained,
            "each event's hash chains to its record's previous one"
        );
        let transactions: HashSet<i64> = rows.iter().map(|r| r.2).collect();
        assert_eq!(transactions.len(), 1, "one transaction for the group");
        for (events, answer) in commands.iter().zip(answers) {
            let at = answer.expect("appended").expect("a position");
            let id = &events[0].aggregate_id;
            let mine: Vec<&(String, i64, i64, i64)> = rows.iter().filter(|r| &r.0 == id).collect();
            let sequences: Vec<i64> = mine.iter().map(|r| r.1).collect();
            let expected: Vec<i64> = (1..=events.len() as i64).collect();
            assert_eq!(sequences, expected, "{id}: its events in order");
            assert_eq!(
                at.position,
                mine.last().expect("landed").3,
                "{id}: answered with its last event's position"
            );
        }
        app.stop().await;
    }

    #[tokio::test]
    async fn a_group_with_a_taken_sequence_lands_the_others_and_refuses_only_that_command() {
        let app = spawn_app().await;
        let appender = GroupAppender::new(app.pg().clone());
        appender
            .append(&[probe("taken", 1)])
            .await
            .expect("first append");

        let mut commands: Vec<Vec<SerializedEvent>> =
            (0..8).map(|i| vec![probe(&format!("s{i}"), 1)]).collect();
        // Another writer's command on `taken` came first: its sequence 1 is taken.
        commands.insert(4, vec![probe("taken", 1)]);
        let answers = join_all(commands.iter().map(|events| appender.append(events))).await;

        for (events, answer) in commands.iter().zip(&answers) {
            if events[0].aggregate_id == "taken" {
                assert!(
                    matches!(answer, Err(PersistenceError::OptimisticLockError)),
                    "the command that lost the race is told so: {answer:?}"
                );
            } else {
                assert!(
                    matches!(answer, Ok(Some(_))),
                    "{}: {answer:?}",
                    events[0].aggregate_id
                );
            }
        }
        let (rows, chained) = landed(app.pg()).await;
        let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(ids.iter().filter(|id| **id == "taken").count(), 1);
        assert_eq!(rows.len(), 9, "the eight others landed, nothing twice");
        assert!(chained);
        app.stop().await;
    }
}

//! Command-line interface: `serve` (the default), `migrate`, `token create`, `events export`,
//! `events import`, `audit verify`, `projections rebuild`, `migrate-data`.

use arctyk_domain::Role;
use arctyk_projections::rebuild::{log_length, rebuild};
use arctyk_projections::{
    catalog_projection, ticket_projection, CatalogProjection, Db, TicketProjection,
};
use clap::{Parser, Subcommand};

use crate::rebuild_progress::RebuildProgress;
use crate::store::users::Users;
use crate::{auth, db, Application, Config};

#[derive(Parser)]
#[command(
    name = "arctyk",
    version,
    about = "Event-sourced IT service management backend"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the HTTP API and the log's subscribers (the default).
    Serve,
    /// Create the database if needed and apply migrations.
    Migrate,
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage read models.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Email notifications.
    #[command(subcommand)]
    Email(EmailCommand),
    /// Print a ticket's history from the event log as a timeline, one line per event:
    /// version, time recorded, actor, event and what changed.
    Replay {
        /// The ticket number, e.g. 123 or TKT-000123.
        #[arg(long)]
        ticket: String,
    },
    /// The event log.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Inbound email.
    #[command(subcommand)]
    Mail(MailCommand),
    /// Tamper evidence.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Move the whole installation to another database (e.g. SQLite to PostgreSQL): the
    /// event log with its hashes in order, users and tokens; then rebuild the read models
    /// there and verify the moved log. The target's log must be empty.
    MigrateData {
        /// The database to move from, e.g. sqlite://arctyk.db (not in use by a server).
        #[arg(long)]
        from: String,
        /// The database to move to, e.g. postgres://postgres@127.0.0.1:5432/arctyk.
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute every event's hash, check every record's sequences and every checkpoint;
    /// print each finding and exit non-zero if there is any.
    Verify {
        /// Verify this export (`arctyk events export`) offline instead of the database.
        #[arg(long, value_name = "FILE")]
        from_export: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token (and the user, if needed); prints the token alone on stdout.
    Create {
        #[arg(long)]
        email: String,
        /// admin, manager, agent, end_user or auditor.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// A label for the token (and the user's name when it is created).
        #[arg(long, default_value = "")]
        name: String,
    },
}

#[derive(Subcommand)]
pub enum EmailCommand {
    /// Send a test message with the EMAIL_* settings, to check them.
    Test {
        /// The address to send it to.
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
pub enum MailCommand {
    /// Read one RFC 5322 message on stdin and turn it into a ticket or a comment, for an
    /// MTA pipe (`| arctyk mail ingest`). Exit codes per sysexits: 0 accepted (also when
    /// deliberately dropped), 65 unreadable, 67 unknown queue, 75 try again later.
    Ingest {
        /// Project key of new tickets, over the `ARCTYK_INBOUND_QUEUES` mapping.
        #[arg(long)]
        queue: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum EventsCommand {
    /// Write the log in global order to stdout, one JSON object per line, as
    /// `GET /api/events/` streams it.
    Export {
        /// Start after the event at this position (0: the whole log).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
        after: i64,
        /// Leave out events recorded after this RFC 3339 time.
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Restore an export into an empty log (a fresh, migrated database), checking every
    /// event's hash as it goes, then rebuild the read models.
    Import {
        /// The NDJSON export; `-` reads stdin.
        #[arg(value_name = "FILE")]
        file: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
pub enum ProjectionsCommand {
    /// Empty the read models and rebuild them from the event log.
    Rebuild,
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse::<Role>().map_err(|error| error.to_string())
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            if db::create_if_missing(&config.database_url).await? {
                tracing::info!(database = %config.database_url_redacted(), "created database");
            }
            let app = Application::build(config.clone()).await?;
            tracing::info!(
                listen = %app.addr(),
                database = %config.database_url_redacted(),
                "arctyk serving"
            );
            app.run_until_stopped().await?;
        }
        Command::Migrate => {
            db::create_if_missing(&config.database_url).await?;
            let database = db::connect(&config).await?;
            db::migrate(&database).await?;
            eprintln!("migrations applied");
        }
        Command::Token(TokenCommand::Create { email, role, name }) => {
            let email = email.trim();
            if !email.contains('@') {
                return Err(format!("'{email}' is not an email address").into());
            }
            db::create_if_missing(&config.database_url).await?;
            let database = db::connect(&config).await?;
            db::migrate_if_pending(&database).await?;
            let users = Users::new(database);
            let user = users.upsert(email, &name, role).await?;
            let token = auth::generate_token();
            users
                .add_token(user.id, &name, &auth::digest(&token))
                .await?;
            println!("{token}");
        }
        Command::Replay { ticket } => {
            let database = db::connect(&config).await?;
            for line in crate::replay_timeline::ticket_timeline(&database, &ticket).await? {
                println!("{line}");
            }
        }
        Command::Email(EmailCommand::Test { to }) => {
            crate::notifications::mailer::send_test(&config, &to).await?;
            eprintln!("test message sent to {to}");
        }
        Command::Mail(MailCommand::Ingest { queue }) => {
            let code = crate::inbound::cli::ingest_stdin(&config, queue.as_deref()).await;
            if code != 0 {
                std::process::exit(code);
            }
        }
        Command::Events(EventsCommand::Export { after, until }) => {
            let database = db::connect_log_reader(&config).await?;
            let written = crate::event_export::export(database, after, until).await?;
            eprintln!("exported {written} events");
        }
        Command::Audit(AuditCommand::Verify { from_export }) => {
            let database = match from_export {
                Some(_) => None,
                None => Some(db::connect_log_reader(&config).await?),
            };
            crate::audit::verify::run(database, from_export.as_deref()).await?;
        }
        Command::Events(EventsCommand::Import { file }) => {
            let database = db::connect_log_reader(&config).await?;
            db::migrate_if_pending(&database).await?;
            let started = std::time::Instant::now();
            let imported = crate::event_import::import(&database, &file).await?;
            let took = started.elapsed().as_secs_f64();
            eprintln!(
                "imported {imported} events in {took:.1}s ({:.0} events/s), every hash as exported",
                imported as f64 / took.max(1e-6)
            );
            rebuild_read_models(&database).await?;
            crate::event_import::restore_reservations(&database).await?;
        }
        Command::MigrateData { from, to } => migrate_data(&from, &to, &config).await?,
        Command::Projections(ProjectionsCommand::Rebuild) => {
            let database = db::connect_log_reader(&config).await?;
            db::migrate_if_pending(&database).await?;
            rebuild_read_models(&database).await?;
        }
    }
    Ok(())
}

/// `arctyk migrate-data`: moves the log, users and tokens, rebuilds the read models on
/// the target and verifies its log.
async fn migrate_data(
    from: &str,
    to: &str,
    config: &Config,
) -> Result<(), Box<dyn std::error::Error>> {
    let source = Db::connect(from, 4).await?;
    if db::has_pending_migrations(&source).await? {
        return Err(format!(
            "the source database is behind this version of arctyk: run `arctyk migrate` \
             with DATABASE_URL={from} first"
        )
        .into());
    }
    if db::create_if_missing(to).await? {
        eprintln!("created the target database");
    }
    let target = Db::connect(to, config.db_pool_size.max(2)).await?;
    let started = std::time::Instant::now();
    let moved = crate::migrate_data::migrate_data(&source, &target).await?;
    eprintln!(
        "moved {} events (every hash as in the source), {} users and {} tokens in {:.1}s",
        moved.events,
        moved.users,
        moved.tokens,
        started.elapsed().as_secs_f64()
    );
    rebuild_read_models(&target).await?;
    crate::event_import::restore_reservations(&target).await?;
    let report = crate::audit::verify::verify_database(&target).await?;
    if !report.is_clean() {
        return Err(format!("the moved log does not verify: {}", report.summary()).into());
    }
    eprintln!("{}", report.summary());
    Ok(())
}

/// Empties the read models and replays the whole log into them, reporting progress and
/// rate on stderr: `projections rebuild`, and the end of `events import`.
async fn rebuild_read_models(database: &Db) -> Result<(), Box<dyn std::error::Error>> {
    rebuild_with_progress(
        database,
        "tickets",
        "read models",
        &TicketProjection::default(),
        ticket_projection::TABLES,
        ticket_projection::AGGREGATE_TYPES,
    )
    .await?;
    rebuild_with_progress(
        database,
        "projects and assets",
        "project and asset read models",
        &CatalogProjection,
        catalog_projection::TABLES,
        catalog_projection::AGGREGATE_TYPES,
    )
    .await
}

/// One projection's rebuild, with its progress bar and a closing line naming `models`.
async fn rebuild_with_progress<P: arctyk_projections::Processor>(
    database: &Db,
    label: &'static str,
    models: &str,
    processor: &P,
    tables: &[&str],
    aggregate_types: &[&str],
) -> Result<(), Box<dyn std::error::Error>> {
    let events = log_length(database, aggregate_types).await?;
    let mut progress = RebuildProgress::new(label, events);
    let total = rebuild(database, processor, tables, aggregate_types, |n| {
        progress.update(n)
    })
    .await?;
    let (took, rate) = progress.finish(total);
    eprintln!(
        "rebuilt {models} from {total} events in {:.1}s ({rate:.0} events/s)",
        took.as_secs_f64()
    );
    Ok(())
}

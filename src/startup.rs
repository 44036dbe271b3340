//! Building the application: database, log subscribers, HTTP listener.

use std::net::SocketAddr;
use std::sync::Arc;

use arctyk_projections::subscription::{listen, listen_for_events, LogNotifier};
use arctyk_projections::{
    CatalogProjection, Db, DbError, FreshDocuments, Subscription, TicketProjection, TicketReads,
};
use axum::extract::Request;
use axum::serve::ListenerExt;
use axum::ServiceExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;

use crate::auth::Authenticator;
use crate::catalog::CatalogService;
use crate::clock::{Clock, SystemClock};
use crate::http::{self, ApiServices, ApiState};
use crate::inbound::InboundService;
use crate::sla_clock::SlaClockWorker;
use crate::store::ticket_log::TicketLog;
use crate::store::users::Users;
use crate::ticket_links::LinkMirror;
use crate::tickets::TicketService;
use crate::webhooks::{
    http_client, DeliverySettings, WebhookDeliveryWorker, WebhookEnqueuer, WebhookStore,
    WEBHOOKS_CHANNEL,
};
use crate::{db, Config};

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the database at {url}: {source}")]
    Database { url: String, source: DbError },
    #[error("cannot apply migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the webhook HTTP client: {0}")]
    WebhookClient(reqwest::Error),
    #[error("cannot set up notifications: {0}")]
    Notifications(crate::notifications::SetupError),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// A built, listening application that has not started serving yet.
pub struct Application {
    addr: SocketAddr,
    listener: TcpListener,
    router: axum::Router,
    db: Db,
    shutdown: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
}

impl Application {
    /// Connects, migrates, starts the log's subscribers and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// As [`Application::build`], with commands stamped and SLA deadlines judged by
    /// `clock` (tests pass a `ManualClock`).
    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        let database = db::connect(&config)
            .await
            .map_err(|source| StartupError::Database {
                url: config.database_url_redacted(),
                source,
            })?;
        match &database {
            Db::Postgres(_) => tracing::info!(
                backend = "postgresql",
                database = %config.database_url_redacted(),
                "database"
            ),
            Db::Sqlite(sqlite) => tracing::info!(
                backend = "sqlite",
                file = %sqlite.path().display(),
                "database"
            ),
        }
        // Skipped when current, so a runtime role without DDL rights can serve.
        db::migrate_if_pending(&database).await?;

        let (shutdown, shutdown_rx) = watch::channel(false);
        // Documents the projection commits go straight to the writes waiting on them.
        let fresh_documents = FreshDocuments::default();
        let projection = Subscription::new(
            database.clone(),
            TicketProjection::publishing(fresh_documents.clone()),
        );
        let progress = projection.progress();
        let catalog = Subscription::new(database.clone(), CatalogProjection);
        let catalog_progress = catalog.progress();
        // Email, Slack and Teams: the subscriber that enqueues and the worker that sends.
        let (notifications, notification_worker) = crate::notifications::wire(&database, &config)
            .await
            .map_err(StartupError::Notifications)?;
        // Sends the webhook queues' heads; woken by the notification each transaction that
        // writes deliveries sends at its commit, in every process.
        let delivery_settings = DeliverySettings {
            timeout: config.webhook_timeout(),
            max_connections: config.webhook_max_connections as usize,
            allow_private: config.webhook_allow_private,
        };
        let webhook_client =
            http_client(&delivery_settings).map_err(StartupError::WebhookClient)?;
        let delivery_database =
            db::connect_delivery(&config, &database)
                .await
                .map_err(|source| StartupError::Database {
                    url: config.database_url_redacted(),
                    source: source.into(),
                })?;
        let delivery = WebhookDeliveryWorker::new(
            delivery_database,
            config.webhook_retry_schedule.clone(),
            delivery_settings,
        )
        .map_err(StartupError::WebhookClient)?;
        // On SQLite no notification crosses the database: the enqueuer and the store wake
        // the worker.
        let delivery_waker = delivery.waker();
        let webhooks = Subscription::new(
            database.clone(),
            WebhookEnqueuer::new().with_delivery_waker(delivery_waker.clone()),
        );
        // Appends of this process wake the subscribers that want them at once: ticket
        // events the ticket projection, project and asset events the catalog, both the
        // webhook enqueuer. On PostgreSQL the notification subscriber hears of appends
        // through LISTEN (it need not hurry: nobody waits on it); on SQLite nothing
        // crosses the database, so it is woken here.
        let local_wakers = |subscriber: Arc<Notify>| {
            let mut wakers = vec![subscriber, webhooks.waker()];
            if let Db::Sqlite(_) = database {
                wakers.push(notifications.waker());
            }
            wakers
        };
        let notifier = LogNotifier::new(local_wakers(projection.waker()));
        let catalog_notifier = notifier.waking(local_wakers(catalog.waker()));
        let mut workers = vec![tokio::spawn(
            notifier.clone().run(database.clone(), shutdown_rx.clone()),
        )];
        if config.run_subscribers {
            // Appends of this process wake these at once (the notifier's local wakers).
            workers.push(tokio::spawn(notifier.clone().listen_for_others(
                database.clone(),
                vec![projection.waker(), catalog.waker(), webhooks.waker()],
                shutdown_rx.clone(),
            )));
            workers.push(tokio::spawn(projection.run(shutdown_rx.clone())));
            workers.push(tokio::spawn(catalog.run(shutdown_rx.clone())));
            workers.push(tokio::spawn(listen(
                database.clone(),
                WEBHOOKS_CHANNEL,
                vec![delivery.waker()],
                shutdown_rx.clone(),
            )));
            workers.push(tokio::spawn(webhooks.run(shutdown_rx.clone())));
            workers.push(tokio::spawn(delivery.run(shutdown_rx.clone())));
            workers.push(tokio::spawn(listen_for_events(
                database.clone(),
                vec![notifications.waker()],
                shutdown_rx.clone(),
            )));
            workers.push(tokio::spawn(notifications.run(shutdown_rx.clone())));
            workers.push(tokio::spawn(notification_worker.run(shutdown_rx.clone())));
        }

        let users = Users::new(database.clone());
        let tickets = TicketService::new(
            TicketLog::new(database.clone()),
            TicketReads::new(database.clone()).with_fresh_documents(fresh_documents),
            progress,
            notifier.clone(),
            config.read_your_writes(),
            clock.clone(),
        );
        let catalog = CatalogService::new(
            database.clone(),
            catalog_progress,
            catalog_notifier,
            config.read_your_writes(),
            clock.clone(),
        );
        let state = ApiState::new(ApiServices {
            inbound: InboundService::new(
                tickets.clone(),
                catalog.clone(),
                users.clone(),
                database.clone(),
                &config,
            ),
            tickets,
            catalog,
            auth: Authenticator::new(users.clone()),
            users,
            webhooks: WebhookStore::new(database.clone()).with_delivery_waker(delivery_waker),
            webhook_allow_private: config.webhook_allow_private,
            webhook_client,
            database: database.clone(),
            public_url: config.public_url.clone(),
            clock: clock.clone(),
        });
        if config.run_subscribers {
            // Completes the other side of ticket links after a crash; it polls, as it
            // only has work when the synchronous second write did not happen.
            let link_mirror =
                Subscription::new(database.clone(), LinkMirror::new(state.tickets.clone()));
            workers.push(tokio::spawn(link_mirror.run(shutdown_rx.clone())));
            // Records SLA breaches as their deadlines pass; its first pass at start-up
            // catches up on deadlines that passed while the server was down.
            let sla_clock = SlaClockWorker::new(state.tickets.clone(), clock);
            workers.push(tokio::spawn(sla_clock.run(shutdown_rx.clone())));
            // Running hashes over the global log, once a minute (tamper evidence).
            workers.push(tokio::spawn(crate::audit::checkpoints::run(
                database.clone(),
                shutdown_rx.clone(),
            )));
        }
        let router = http::router(state, config.max_body_bytes);

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartupError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartupError::Listen {
                addr: config.listen,
                source,
            })?;
        Ok(Self {
            addr,
            listener,
            router,
            db: database,
            shutdown,
            workers,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Serves until `stop` resolves (Ctrl-C or SIGTERM for `arctyk serve`), then stops
    /// the subscribers. Work in flight is committed or rolled back, never half-done.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        // Trailing slashes are trimmed before routing, so `/api/tickets/1/` and
        // `/api/tickets/1` reach the same handler.
        let app = NormalizePathLayer::trim_trailing_slash().layer(self.router);
        // Small JSON answers go out at once instead of waiting on Nagle's algorithm.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY");
            }
        });
        let served = axum::serve(
            listener,
            ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app),
        )
        .with_graceful_shutdown(stop)
        .await;
        let _ = self.shutdown.send(true);
        for worker in self.workers {
            let _ = worker.await;
        }
        served.map_err(StartupError::Serve)
    }

    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        self.run_until(shutdown_signal()).await
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}

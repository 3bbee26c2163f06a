//! The `whis` server: signaling over SSE + POST, tracker, manifest service,
//! static origin or reverse proxy, worker-browser supervision and metrics.
//!
//! # Run loop
//! [`start`] binds the listener, spawns the actix server and the background
//! tasks (heartbeat expiry, manifest warm-up, dashboard samples, worker supervisor) and returns a
//! [`Running`] handle; [`Running::stop`] closes every event stream, stops the
//! supervisor (no Chromium is left behind) and shuts the HTTP server down.
//! Tests start it on `127.0.0.1:0` exactly as `whis serve` does.

pub mod assets;
pub mod browser;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod ids;
pub mod manifests;
pub mod metrics;
pub mod origin;
pub mod pages;
pub mod routes;
pub mod signaling;
pub mod state;
pub mod workers;

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::middleware::{from_fn, Compress};
use actix_web::{web, App, HttpServer};
use tokio::task::JoinHandle;

pub use config::Config;
pub use state::AppState;

pub struct Running {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    handle: actix_web::dev::ServerHandle,
    server: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
    supervisor: Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Close every event stream, stop background tasks and the HTTP server.
    pub async fn stop(self) {
        self.state.signaling().close_all();
        for task in &self.background {
            task.abort();
        }
        if let Some((stop, task)) = self.supervisor {
            let _ = stop.send(());
            let _ = task.await;
        }
        self.handle.stop(true).await;
        let _ = self.server.await;
    }

    /// Run until SIGINT or SIGTERM, then stop gracefully.
    pub async fn until_signal(self) {
        wait_for_signal().await;
        log::info!("shutting down: closing event streams and worker browsers");
        self.stop().await;
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                log::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Answers go out as several writes (head, then body chunks); with Nagle's
/// algorithm on, a keep-alive connection's next small answer waits for the
/// peer's delayed ACK (about 40 ms on Linux). Every connection sends at once.
fn no_delay(conn: &dyn std::any::Any, _: &mut actix_web::dev::Extensions) {
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        if let Err(e) = tcp.set_nodelay(true) {
            log::debug!("TCP_NODELAY not set: {e}");
        }
    }
}

/// Bind, start serving and return at once.
pub async fn start(config: Config) -> std::io::Result<Running> {
    let listener = std::net::TcpListener::bind(config.listen)?;
    let addr = listener.local_addr()?;
    let chromium = if config.workers.enabled {
        let found = browser::find_chromium(config.workers.chromium.as_deref());
        if found.is_none() {
            log::warn!(
                "no Chromium found (--chromium PATH, $CHROME, $CHROMIUM or /usr/bin/chromium): \
                 running WITHOUT worker browsers; visitors still share with each other"
            );
        }
        found
    } else {
        None
    };
    let workers = workers::WorkerHandle::new(chromium.is_some());
    let state = AppState::new(config, workers);
    // Workers and prerender reach the server on loopback even if it listens on 0.0.0.0.
    let reach = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    state.set_base_url(format!("http://{reach}"));
    let app_state = web::Data::new(Arc::clone(&state));
    let origin_only = state.config.origin_only;
    let server = HttpServer::new(move || {
        let app = App::new()
            .app_data(app_state.clone())
            .app_data(web::Data::new(
                awc::Client::builder().disable_redirects().finish(),
            ))
            .wrap(from_fn(routes::cors))
            .wrap(actix_web::middleware::Logger::new("%r %s %b %Dms").log_target("whis::access"));
        if origin_only {
            return app.default_service(web::to(origin::serve));
        }
        // Whis's own scripts and pages are gzipped for browsers that accept it:
        // on a congested origin they are what a first visit waits for. Site
        // files never are (their bytes are pieces, counted and ranged).
        app.service(
            web::resource("/whis-sw.js")
                .wrap(Compress::default())
                .get(assets::serve),
        )
        .service(
            web::scope("/whis")
                .service(
                    web::resource("/join")
                        .post(signaling::join)
                        .default_service(web::to(routes::method_not_allowed)),
                )
                .service(
                    web::resource("/events")
                        .get(signaling::events)
                        .default_service(web::to(routes::method_not_allowed)),
                )
                .service(
                    web::resource("/signal")
                        .post(signaling::signal)
                        .default_service(web::to(routes::method_not_allowed)),
                )
                .service(
                    web::resource("/announce")
                        .post(signaling::announce)
                        .default_service(web::to(routes::method_not_allowed)),
                )
                .service(
                    web::resource("/leave")
                        .post(signaling::leave)
                        .default_service(web::to(routes::method_not_allowed)),
                )
                .service(
                    web::resource("/manifest")
                        .get(routes::manifest)
                        .default_service(web::to(routes::method_not_allowed)),
                )
                .service(
                    web::resource("/next")
                        .post(pages::next)
                        .default_service(web::to(routes::method_not_allowed)),
                )
                .service(
                    web::resource("/render")
                        .get(routes::render)
                        .default_service(web::to(routes::method_not_allowed)),
                )
                .service(
                    web::resource("/dashboard")
                        .wrap(Compress::default())
                        .get(dashboard::page),
                )
                .service(web::resource("/dashboard/events").get(dashboard::events))
                .service(web::resource("/health").get(metrics::health))
                .service(web::resource("/metrics").get(metrics::metrics))
                .service(
                    web::resource("/{file:.*}")
                        .wrap(Compress::default())
                        .get(assets::serve),
                )
                .default_service(web::to(routes::not_found)),
        )
        .default_service(web::to(origin::serve))
    })
    .on_connect(no_delay)
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(5)
    .workers(
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 8),
    )
    .run();
    let handle = server.handle();
    let server = tokio::spawn(server);
    let background = vec![
        tokio::spawn(signaling::heartbeat_loop(Arc::clone(&state))),
        tokio::spawn(manifests::warm(Arc::clone(&state))),
        tokio::spawn(dashboard::sample_loop(Arc::clone(&state))),
    ];
    let supervisor = chromium.map(|chromium| {
        let profile_root =
            state.config.workers.profile_dir.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("whis-workers-{}", addr.port()))
            });
        let env = workers::WorkerEnv {
            chromium,
            base_url: state.base_url().to_string(),
            profile_root,
            secret: state.worker_secret.clone(),
        };
        let (render_tx, render_rx) = tokio::sync::mpsc::channel(32);
        state.workers.set_render_queue(render_tx);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(workers::supervise(
            Arc::clone(&state),
            env,
            render_rx,
            stop_rx,
        ));
        (stop_tx, task)
    });
    Ok(Running {
        addr,
        state,
        handle,
        server,
        background,
        supervisor,
    })
}

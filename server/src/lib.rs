//! The `whis` server: signaling over SSE + POST, tracker, manifest service,
//! static origin or reverse proxy, worker-browser supervision and metrics.
//!
//! # Run loop
//! [`start`] binds the listener, spawns the actix server and the background
//! tasks (heartbeat expiry, manifest warm-up, dashboard samples, worker supervisor) and returns a
//! [`Running`] handle; [`Running::stop`] (what SIGTERM does) stops accepting,
//! tells every event stream to come back later (`going-away`), waits a
//! bounded time for requests in flight and stops the supervisor (no Chromium
//! is left behind). SIGHUP reads the TLS certificate again.
//! Tests start it on `127.0.0.1:0` exactly as `whis serve` does.
//!
//! # Layers
//! Each module belongs to one layer and imports only from its own layer or
//! those above it in this list (and from `whis_core`), never in a circle;
//! `layers_import_only_downwards` checks both. `AppState` is the only thing
//! that knows every service.
//!
//! 1. **Foundation** — plain types and helpers, no shared state:
//!    `config`, `error`, `ids`, `ice`, `browser`, `site_files`, `upstream`,
//!    `counted`; `cli` (flags, WHIS_* variables, --config), `logging`, `tls`.
//! 2. **Services** — each owns one piece of mutable state:
//!    `relay` (the hub and the live streams), `manifests`, `workers` (the
//!    handle), `history`, `stun` (the STUN socket and its counters).
//! 3. **State** — `state`: `AppState` composes the services.
//! 4. **Edges** — HTTP handlers and background tasks, which reach the
//!    services through `AppState`: `signaling`, `origin`, `routes`,
//!    `pages`, `assets`, `metrics`, `dashboard`, and the worker tasks
//!    (`workers::supervise`, `workers::browser_task`, `workers::memory`);
//!    and `check_site`, the `whis check-site` command.
//! 5. **Wiring** — this file: routes, middleware and tasks.

// 1. Foundation
pub mod browser;
pub mod config;
pub mod counted;
pub mod error;
pub mod ice;
pub mod ids;
pub mod site_files;
pub mod upstream;
// 1. Foundation: running Whis for a real site
pub mod cli;
pub mod logging;
pub mod tls;
// 2. Services
pub mod history;
pub mod manifests;
pub mod relay;
pub mod stun;
pub mod workers;
// 3. State
pub mod state;
// 4. Edges
pub mod assets;
pub mod dashboard;
pub mod metrics;
pub mod origin;
pub mod pages;
pub mod routes;
pub mod signaling;
// 4. Edges: commands beside `serve`
pub mod check_site;

use std::net::SocketAddr;
use std::sync::Arc;

use actix_cors::Cors;
use actix_web::http::{header, Method};
use actix_web::middleware::{from_fn, Compress, Condition};
use actix_web::{web, App, HttpServer};
use tokio::task::JoinHandle;

pub use config::Config;
pub use state::AppState;

pub struct Running {
    pub addr: SocketAddr,
    /// Where whis answers STUN (UDP), unless it was turned off.
    pub stun_addr: Option<SocketAddr>,
    pub state: Arc<AppState>,
    handle: actix_web::dev::ServerHandle,
    server: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
    supervisor: Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)>,
    /// `--tls-cert`: what SIGHUP reads again.
    pub tls: Option<Arc<tls::Certificates>>,
}

impl Running {
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stop as on SIGTERM: stop accepting connections, tell every event
    /// stream to come back after `--reconnect-delay` (`going-away`) and end
    /// it, wait at most `--shutdown-timeout` for requests in flight, then
    /// close the worker browsers. Data channels between visitors do not
    /// pass through the server and keep working.
    pub async fn stop(self) {
        self.handle.pause().await;
        let retry = self.state.config.deploy.reconnect_delay;
        self.state.stopping();
        self.state
            .signaling()
            .going_away(retry.as_millis().try_into().unwrap_or(u64::MAX));
        for task in &self.background {
            task.abort();
        }
        self.handle.stop(true).await;
        let _ = self.server.await;
        if let Some((stop, task)) = self.supervisor {
            let _ = stop.send(());
            let _ = task.await;
        }
    }

    /// Run until SIGINT or SIGTERM, then stop gracefully; SIGHUP reads the
    /// TLS certificate and key again.
    pub async fn until_signal(self, mut signals: Signals) {
        signals.wait(self.tls.as_deref()).await;
        log::info!("shutting down: telling event streams, closing worker browsers");
        self.stop().await;
    }
}

/// SIGINT, SIGTERM and SIGHUP, caught from the moment this is made: make it
/// before telling anyone the server is up, so that an early signal does not
/// find the default action (which ends the process at once).
pub struct Signals {
    #[cfg(unix)]
    caught: Option<[tokio::signal::unix::Signal; 3]>,
}

impl Signals {
    pub fn listen() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let caught = [
                SignalKind::interrupt(),
                SignalKind::terminate(),
                SignalKind::hangup(),
            ]
            .map(signal);
            match caught {
                [Ok(int), Ok(term), Ok(hup)] => Signals {
                    caught: Some([int, term, hup]),
                },
                [Err(e), ..] | [_, Err(e), _] | [.., Err(e)] => {
                    log::warn!("cannot catch signals ({e}); only Ctrl-C stops the server");
                    Signals { caught: None }
                }
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Until SIGINT or SIGTERM; each SIGHUP meanwhile reads `certs` again.
    async fn wait(&mut self, certs: Option<&tls::Certificates>) {
        #[cfg(unix)]
        if let Some([int, term, hup]) = &mut self.caught {
            loop {
                tokio::select! {
                    _ = int.recv() => return,
                    _ = term.recv() => return,
                    _ = hup.recv() => match certs.map(|c| c.reload()) {
                        Some(Ok(())) => log::info!("SIGHUP: TLS certificate and key read again"),
                        Some(Err(e)) => log::error!("SIGHUP: {e}; still serving the certificate loaded before"),
                        None => log::info!("SIGHUP: nothing to read again (no --tls-cert)"),
                    },
                }
            }
        }
        let _ = certs;
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `--allow-origin`: pages of these origins may use the Whis API (`*`: any).
/// A request from any other origin is answered as usual, without CORS
/// headers, so same-origin pages (whose POSTs carry `Origin` too) are never
/// refused.
fn cors(allowed: &[String]) -> Cors {
    let mut cors = Cors::default()
        .block_on_origin_mismatch(false)
        .allowed_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("last-event-id"),
        ])
        .max_age(600);
    if allowed.iter().any(|a| a == "*") {
        cors = cors.allow_any_origin();
    } else {
        for origin in allowed {
            cors = cors.allowed_origin(origin);
        }
    }
    cors
}

/// Count the body bytes of Whis's own answers (after compression) into
/// `whis_own_bytes_total`: the uplink Whis adds on top of the site's bytes.
async fn count_own(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let counter = req
        .app_data::<web::Data<Arc<AppState>>>()
        .map(|s| Arc::clone(&s.metrics.own_bytes));
    let res = next.call(req).await?.map_into_boxed_body();
    Ok(match counter {
        Some(c) => res
            .map_body(|_, body| actix_web::body::EitherBody::left(counted::Counted::new(body, c))),
        None => res.map_body(|_, body| actix_web::body::EitherBody::right(body)),
    })
}

/// Bind, start serving and return at once.
pub async fn start(config: Config) -> std::io::Result<Running> {
    let listener = std::net::TcpListener::bind(config.listen)?;
    let addr = listener.local_addr()?;
    let stun_socket = match config.ice.stun {
        Some(at) if !config.origin_only => Some(stun::bind(at)?),
        _ => None,
    };
    // With HTTPS, the worker browsers (which cannot check the public name's
    // certificate on loopback) reach the same app over a loopback HTTP port.
    let tls = match &config.deploy.tls {
        Some((cert, key)) => Some((
            tls::Certificates::load(cert, key)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
            std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?,
        )),
        None => None,
    };
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
    let stun_addr = match &stun_socket {
        Some(s) => Some(s.local_addr()?),
        None => None,
    };
    if let Some(bound) = stun_addr {
        state.set_stun_addr(bound);
    }
    // Workers and prerender reach the server on loopback even if it listens on 0.0.0.0.
    let reach = match &tls {
        Some((_, internal)) => internal.local_addr()?,
        None if addr.ip().is_unspecified() => SocketAddr::from(([127, 0, 0, 1], addr.port())),
        None => addr,
    };
    state.set_base_url(format!("http://{reach}"));
    let app_state = web::Data::new(Arc::clone(&state));
    let origin_only = state.config.origin_only;
    let allow_origins = state.config.allow_origins.clone();
    let json = error::json_config(state.config.max_body);
    let shutdown_timeout = state.config.deploy.shutdown_timeout.as_secs();
    let server = HttpServer::new(move || {
        let app = App::new()
            .app_data(app_state.clone())
            .app_data(json.clone())
            .app_data(web::Data::new(
                awc::Client::builder().disable_redirects().finish(),
            ))
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
                .wrap(from_fn(count_own))
                .get(assets::serve),
        )
        .service(
            web::scope("/whis")
                .wrap(from_fn(count_own))
                .wrap(Condition::new(
                    !allow_origins.is_empty(),
                    cors(&allow_origins),
                ))
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
    // Answers go out as several writes (head, then body chunks); with Nagle's
    // algorithm on, a keep-alive connection's next small answer waits for the
    // peer's delayed ACK (about 40 ms on Linux). Every connection sends at once.
    .tcp_nodelay(true)
    .disable_signals()
    .shutdown_timeout(shutdown_timeout)
    .workers(
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 8),
    );
    let server = match &tls {
        Some((certs, internal)) => {
            let config = certs
                .server_config()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            server
                .listen_rustls_0_23(listener, config)?
                .listen(internal.try_clone()?)?
        }
        None => server.listen(listener)?,
    }
    .run();
    let handle = server.handle();
    let server = tokio::spawn(server);
    let mut background = vec![
        tokio::spawn(signaling::heartbeat_loop(Arc::clone(&state))),
        tokio::spawn({
            let state = Arc::clone(&state);
            async move { state.manifests.warm().await }
        }),
        tokio::spawn(dashboard::sample_loop(Arc::clone(&state))),
    ];
    if chromium.is_some() {
        background.push(tokio::spawn(workers::memory::sample_loop(
            state.workers.clone(),
        )));
    }
    if let Some(socket) = stun_socket {
        background.push(tokio::spawn(stun::serve(socket, Arc::clone(&state.stun))));
    }
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
        stun_addr,
        state,
        handle,
        server,
        background,
        supervisor,
        tls: tls.map(|(certs, _)| certs),
    })
}

#[cfg(test)]
mod tests {
    /// The layer of each module (see "Layers" above); a module may import
    /// only from its own layer or a lower number, and never in a circle.
    const LAYERS: &[(&str, u8)] = &[
        ("browser", 1),
        ("config", 1),
        ("counted", 1),
        ("error", 1),
        ("ice", 1),
        ("ids", 1),
        ("site_files", 1),
        ("upstream", 1),
        ("cli", 1),
        ("logging", 1),
        ("tls", 1),
        ("history", 2),
        ("manifests", 2),
        ("relay", 2),
        ("stun", 2),
        ("workers", 2),
        ("state", 3),
        ("assets", 4),
        ("dashboard", 4),
        ("metrics", 4),
        ("origin", 4),
        ("pages", 4),
        ("routes", 4),
        ("signaling", 4),
        ("workers/supervise", 4),
        ("workers/browser_task", 4),
        ("workers/memory", 4),
        ("check_site", 4),
        ("check_site/links", 4),
    ];

    fn layer_of(module: &str) -> u8 {
        LAYERS
            .iter()
            .find(|(m, _)| *m == module)
            .map(|(_, l)| *l)
            .unwrap_or_else(|| panic!("{module} has no layer in LAYERS"))
    }

    #[test]
    fn layers_import_only_downwards() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut edges: Vec<(&str, String)> = Vec::new();
        for (module, layer) in LAYERS {
            let file = if src.join(format!("{module}.rs")).is_file() {
                src.join(format!("{module}.rs"))
            } else {
                src.join(module).join("mod.rs")
            };
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for (i, _) in code.match_indices("crate::") {
                let used: String = code[i + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let used = match used.as_str() {
                    "workers" if code[i..].starts_with("crate::workers::memory") => {
                        "workers/memory"
                    }
                    other => other,
                };
                assert!(
                    layer_of(used) <= *layer,
                    "{module} (layer {layer}) imports crate::{used} (layer {})",
                    layer_of(used)
                );
                if used != *module && !(*module).starts_with(&format!("{used}/")) {
                    edges.push((module, used.to_string()));
                }
            }
        }
        assert!(edges.len() > 20, "the check saw the imports ({edges:?})");
        // No circle: repeatedly remove modules that import nothing left.
        let mut left: Vec<&str> = LAYERS.iter().map(|(m, _)| *m).collect();
        while let Some(i) = left.iter().position(|m| {
            !edges
                .iter()
                .any(|(from, to)| from == m && left.contains(&to.as_str()))
        }) {
            left.remove(i);
        }
        assert!(
            left.is_empty(),
            "these modules import each other in a circle: {left:?}"
        );
    }
}

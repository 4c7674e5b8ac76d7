//! The admin endpoints on `CARRIER_ADMIN_ADDR` (off by default): `/healthz` (the process and its
//! actor system respond), `/readyz` (queue resolved, webhook online, not draining) and `/metrics`
//! (Prometheus text, from the same stats the log reports).
//!
//! It runs on a thread of its own with its own actix system (one worker, bounded connections and
//! timeouts), so a slow scraper or a client holding connections open never delays a delivery.
//! It reads shared state; it never changes anything.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::{web, App, HttpResponse, HttpServer};
use slog::{info, o, warn, Logger};

use crate::messages::Ping;
use crate::stats::Stats;
use crate::supervisor::{Readiness, Supervisor};

/// How long `/healthz` waits for the supervisor's answer.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Concurrent admin connections served; more wait in the backlog.
const MAX_CONNECTIONS: usize = 64;
/// The content type of what prometheus-client writes (OpenMetrics text, which Prometheus reads).
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct State {
    supervisor: Addr<Supervisor>,
    stats: Arc<Stats>,
    readiness: Arc<Readiness>,
}

/// Binds `addr` now (so a bad address fails at start) and serves from a thread of its own.
pub(crate) fn serve(
    addr: SocketAddr,
    supervisor: Addr<Supervisor>,
    stats: Arc<Stats>,
    readiness: Arc<Readiness>,
    log: Logger,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let state = web::Data::new(State {
        supervisor,
        stats,
        readiness,
    });
    let log = log.new(o!("source" => "admin"));
    let thread_log = log.clone();
    std::thread::Builder::new()
        .name("carrier-admin".into())
        .spawn(move || {
            let result = actix_rt::System::new().block_on(async move {
                HttpServer::new(move || {
                    App::new()
                        .app_data(state.clone())
                        .route("/healthz", web::get().to(healthz))
                        .route("/readyz", web::get().to(readyz))
                        .route("/metrics", web::get().to(metrics))
                })
                .workers(1)
                .max_connections(MAX_CONNECTIONS)
                .client_request_timeout(Duration::from_secs(5))
                .keep_alive(Duration::from_secs(5))
                // Signals are the binary's: the admin port keeps answering while carrier drains.
                .disable_signals()
                .listen(listener)?
                .run()
                .await
            });
            if let Err(e) = result {
                warn!(thread_log, "admin endpoints stopped"; "error" => %e);
            }
        })?;
    info!(log, "admin endpoints listening"; "addr" => %local);
    Ok(())
}

async fn healthz(state: web::Data<State>) -> HttpResponse {
    match actix_rt::time::timeout(PING_TIMEOUT, state.supervisor.send(Ping)).await {
        Ok(Ok(())) => HttpResponse::Ok().body("ok\n"),
        _ => HttpResponse::ServiceUnavailable().body("actor system not responding\n"),
    }
}

async fn readyz(state: web::Data<State>) -> HttpResponse {
    if state.readiness.ready() {
        HttpResponse::Ok().body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable().body("not ready\n")
    }
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(METRICS_CONTENT_TYPE)
        .body(state.stats.encode())
}

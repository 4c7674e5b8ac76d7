//! The admin endpoints on `CARRIER_ADMIN_ADDR` (off by default): `/healthz` (the process and its
//! actor system respond), `/readyz` (queue resolved, webhook online, not draining) and `/metrics`
//! (Prometheus text, from the same stats the log reports).
//!
//! It runs on a thread of its own with its own actix system (one worker, bounded connections and
//! timeouts), so a slow scraper or a client holding connections open never delays a delivery;
//! and it closes idle or half-sent connections after a couple of seconds, with room for many,
//! so those never delay a `/healthz` probe either.
//! It reads shared state; it never changes anything.

use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_http::{HttpService, Method, Request, Response, StatusCode};
use actix_server::Server;
use actix_service::fn_service;
use slog::{info, o, warn, Logger};

use crate::messages::Ping;
use crate::stats::Stats;
use crate::supervisor::{Readiness, Supervisor};

/// How long `/healthz` waits for the supervisor's answer.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Concurrent admin connections served; more wait in the backlog. Far above what probes and a
/// scraper need, so clients that connect and then idle or stall (100 of them, say) cannot crowd
/// out a probe: each costs a socket and a small buffer, for at most [`REQUEST_HEAD_TIMEOUT`] or
/// [`KEEP_ALIVE`]. Bounded so they cannot take every file descriptor of the process (1024 is a
/// common soft limit), which deliveries and SQS calls need.
const MAX_CONNECTIONS: usize = 512;
/// How long a new connection may take to send its request head (connect-and-idle and half-sent
/// requests are closed after it). A probe or a scraper sends its request at once.
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an idle keep-alive connection is kept between requests. Prometheus reuses its
/// connection every scrape interval (15 s or more), so this only saves it a reconnect within
/// bursts; short, so idle connections do not pile up.
const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// The content type of what prometheus-client writes (OpenMetrics text, which Prometheus reads).
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct State {
    supervisor: Addr<Supervisor>,
    stats: Arc<Stats>,
    readiness: Arc<Readiness>,
}

/// Serves the admin endpoints on `listener` (bound by the caller before anything else starts,
/// so an address in use fails the start cleanly) from a thread of its own.
pub(crate) fn serve(
    listener: TcpListener,
    supervisor: Addr<Supervisor>,
    stats: Arc<Stats>,
    readiness: Arc<Readiness>,
    log: Logger,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let state = Arc::new(State {
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
                Server::build()
                    .workers(1)
                    .max_concurrent_connections(MAX_CONNECTIONS)
                    // Signals are the binary's: the admin port keeps answering while carrier drains.
                    .disable_signals()
                    .listen("admin", listener, move || {
                        let state = state.clone();
                        HttpService::build()
                            .client_request_timeout(REQUEST_HEAD_TIMEOUT)
                            .keep_alive(KEEP_ALIVE)
                            .h1(fn_service(move |req: Request| {
                                let state = state.clone();
                                async move { Ok::<_, Infallible>(route(&state, req).await) }
                            }))
                            .tcp()
                    })?
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

fn text(status: StatusCode, body: &'static str) -> Response<String> {
    let mut response = Response::with_body(status, body.to_string());
    response.headers_mut().insert(
        actix_http::header::CONTENT_TYPE,
        actix_http::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn route(state: &State, req: Request) -> Response<String> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match req.path() {
        "/healthz" => {
            match actix_rt::time::timeout(PING_TIMEOUT, state.supervisor.send(Ping)).await {
                Ok(Ok(())) => text(StatusCode::OK, "ok\n"),
                _ => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "actor system not responding\n",
                ),
            }
        }
        "/readyz" if state.readiness.ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/metrics" => {
            let mut response = Response::with_body(StatusCode::OK, state.stats.encode());
            response.headers_mut().insert(
                actix_http::header::CONTENT_TYPE,
                actix_http::header::HeaderValue::from_static(METRICS_CONTENT_TYPE),
            );
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /healthz, /readyz, /metrics\n",
        ),
    }
}

//! The listener: `/metrics` and `/healthz` over HTTP/1.1, a bounded number of connections at
//! once, each with a header timeout.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::runtime::metrics::Metrics;
use stopd_audit::Store;

/// The OpenMetrics text format's content type.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// A request's headers must arrive within this long (a stuck client holds no task for ever).
pub(super) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many connections are open at once, each on a task of its own (a few KiB while
/// it idles). Past it a new connection is closed at once rather than queued behind idle ones:
/// 146 half-open connections once held 16 slots in turn and left `/healthz` unanswered for
/// about 30 s.
const MAX_CONNECTIONS: usize = 512;

/// Serves `/metrics` and `/healthz` on `listener` until `cancel` fires. `database` is opened
/// read-only for the gauges the audit log holds.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    database: stopd_audit::Location,
    cancel: CancellationToken,
) {
    let store: Arc<tokio::sync::OnceCell<Store>> = Arc::default();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            // Full: shed this one (the client sees the connection closed) instead of making
            // it, and every connection after it, wait for an idle one to time out.
            drop(stream);
            continue;
        };
        let (metrics, store, database) =
            (Arc::clone(&metrics), Arc::clone(&store), database.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (metrics, store, database) =
                    (Arc::clone(&metrics), Arc::clone(&store), database.clone());
                async move { Ok::<_, Infallible>(answer(&req, &metrics, &store, &database).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

async fn answer(
    req: &Request<hyper::body::Incoming>,
    metrics: &Metrics,
    store: &tokio::sync::OnceCell<Store>,
    database: &stopd_audit::Location,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => {
            if let Ok(store) = store
                .get_or_try_init(|| Store::open_read_only(database.clone()))
                .await
            {
                metrics.refresh(store).await;
            }
            reply(StatusCode::OK, CONTENT_TYPE, metrics.encode())
        }
        "/healthz" => match metrics.healthy() {
            Ok(text) => reply(StatusCode::OK, "text/plain", text + "\n"),
            Err(text) => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", text + "\n"),
        },
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: /metrics or /healthz\n".into(),
        ),
    }
}

/// Binds the listener of `[metrics]` (before the first sweep, so a port in use fails the start).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("[metrics] cannot listen on {addr}"))?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(listen = %local, "metrics listening on http://{local}/metrics and /healthz");
    Ok(listener)
}

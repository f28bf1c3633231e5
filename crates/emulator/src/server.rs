//! HTTP: the awsJson1_1 endpoint at `POST /` and the admin API under `/_emulator/`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::Answer;
use crate::auth::AuthHeaders;
use crate::faults::FaultPlan;
use crate::fixture::{Fixture, FleetSpec};
use crate::world::Emulator;

/// Largest request body accepted (the service's own limit is far above anything it models).
const MAX_BODY: usize = 1 << 20;

/// A running server; dropping it does not stop the server, [`ServerHandle::shutdown`] does.
#[derive(Debug)]
pub struct ServerHandle {
    /// Where it listens.
    addr: SocketAddr,
    /// The emulator it serves.
    emulator: Emulator,
    /// Cancels the accept loop and every connection.
    shutdown: CancellationToken,
    /// Tracks the accept loop and connection tasks.
    tasks: TaskTracker,
}

impl ServerHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, for `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The emulator behind the server.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Stops accepting, closes connections, and waits for every task to end.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Marker error: hyper closes the connection without an answer when the service fails.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

impl Emulator {
    /// Binds `addr` (use `127.0.0.1:0` in tests) and serves in the background.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<ServerHandle> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let emulator = self.clone();
        let (token, tracker) = (shutdown.clone(), tasks.clone());
        tasks.spawn(async move {
            loop {
                let stream = tokio::select! {
                    () = token.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                };
                let _ = stream.set_nodelay(true);
                let emulator = emulator.clone();
                let token = token.clone();
                tracker.spawn(async move {
                    let service = service_fn(move |req| handle(emulator.clone(), req));
                    let conn =
                        http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        () = token.cancelled() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
                        }
                    }
                });
            }
        });
        Ok(ServerHandle {
            addr,
            emulator: self.clone(),
            shutdown,
            tasks,
        })
    }
}

type HttpResult = Result<Response<Full<Bytes>>, DropConnection>;

async fn handle(emulator: Emulator, req: Request<Incoming>) -> HttpResult {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let target = header("x-amz-target");
    let (authorization, amz_date, date) = (
        header("authorization"),
        header("x-amz-date"),
        header("date"),
    );
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SerializationException",
                "request body too large or unreadable",
            ));
        }
    };
    if let Some(admin) = path.strip_prefix("/_emulator/") {
        return Ok(handle_admin(&emulator, &method, admin, &query, &body));
    }
    if method != Method::POST || path != "/" {
        return Ok(error_response(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "CodePipeline is served at POST /",
        ));
    }
    let _in_flight = emulator.begin_request();
    let auth = AuthHeaders {
        authorization: authorization.as_deref(),
        amz_date: amz_date.as_deref(),
        date: date.as_deref(),
    };
    let (answer, delay) = emulator.handle(target.as_deref(), auth, &body);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match answer {
        Answer::Ok(v) => Ok(json_response(
            StatusCode::OK,
            &v,
            "application/x-amz-json-1.1",
        )),
        Answer::Err(e) => Ok(error_response(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            e.code,
            &e.message,
        )),
        Answer::Drop => Err(DropConnection),
    }
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn json_response(
    status: StatusCode,
    body: &Value,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&request_id()) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let mut resp = json_response(
        status,
        &json!({"__type": code, "message": message}),
        "application/x-amz-json-1.1",
    );
    if let Ok(v) = HeaderValue::from_str(code) {
        resp.headers_mut().insert("x-amzn-errortype", v);
    }
    resp
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockChange {
    /// Move forward by this span ("90s", "2h").
    #[serde(default, with = "humantime_serde")]
    advance: Option<Duration>,
    /// Set to this many epoch milliseconds.
    #[serde(default)]
    set_ms: Option<i64>,
}

/// An admin request that cannot be served: status and message.
struct AdminError(StatusCode, String);

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(|e| AdminError(StatusCode::BAD_REQUEST, e.to_string()))
}

fn handle_admin(
    emulator: &Emulator,
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
) -> Response<Full<Bytes>> {
    match admin_route(emulator, method, path, query, body) {
        Ok(v) => json_response(StatusCode::OK, &v, "application/json"),
        Err(AdminError(status, message)) => {
            json_response(status, &json!({"error": message}), "application/json")
        }
    }
}

fn admin_route(
    emulator: &Emulator,
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
) -> Result<Value, AdminError> {
    Ok(match (method.as_str(), path) {
        ("GET", "health") => json!({"ok": true}),
        ("GET", "state") => state_json(emulator, query),
        ("POST", "seed") => {
            let fixture: Fixture = parse(body)?;
            let n = emulator
                .seed(&fixture)
                .map_err(|e| AdminError(StatusCode::BAD_REQUEST, e.to_string()))?;
            json!({"pipelines": n})
        }
        ("POST", "fleet") => {
            let spec: FleetSpec = parse(body)?;
            json!({"pipelines": emulator.seed_fleet(spec)})
        }
        ("GET", "clock") => clock_json(emulator),
        ("POST", "clock") => {
            let change: ClockChange = parse(body)?;
            if let Some(by) = change.advance {
                emulator.advance(by);
            }
            if let Some(ms) = change.set_ms {
                emulator.set_time(ms);
            }
            clock_json(emulator)
        }
        ("GET", "faults") => serde_json::to_value(emulator.faults()).unwrap_or_default(),
        ("PUT", "faults") => {
            let plan: FaultPlan = parse(body)?;
            emulator.set_faults(plan);
            serde_json::to_value(emulator.faults()).unwrap_or_default()
        }
        ("GET", "calls") => {
            let since: u64 = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("since="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let calls: Vec<_> = emulator
                .calls()
                .into_iter()
                .filter(|c| c.seq >= since)
                .collect();
            json!({"counts": emulator.call_counts(), "max_in_flight": emulator.max_in_flight(), "calls": calls})
        }
        ("DELETE", "calls") => {
            emulator.clear_calls();
            json!({"ok": true})
        }
        ("POST", "reset") => {
            // `?faults=true` clears the fault plan too; by default it stays.
            let clear_faults = query.split('&').any(|kv| kv == "faults=true");
            emulator.reset(clear_faults);
            json!({"ok": true, "faults_cleared": clear_faults})
        }
        _ => {
            return Err(AdminError(
                StatusCode::NOT_FOUND,
                format!("no admin route {method} /_emulator/{path}"),
            ));
        }
    })
}

fn clock_json(emulator: &Emulator) -> Value {
    let w = emulator.lock();
    let now = w.clock.now();
    json!({"now_ms": now, "now": crate::clock::rfc3339(now), "manual": w.clock.is_manual()})
}

fn state_json(emulator: &Emulator, query: &str) -> Value {
    let only = query.split('&').find_map(|kv| kv.strip_prefix("pipeline="));
    let names: Vec<String> = {
        let w = emulator.lock();
        w.pipelines
            .keys()
            .filter(|n| only.is_none_or(|o| o == n.as_str()))
            .cloned()
            .collect()
    };
    let pipelines: Vec<Value> = names
        .iter()
        .map(|name| {
            let executions: Vec<Value> = emulator
                .executions(name)
                .into_iter()
                .map(|e| {
                    json!({
                        "id": e.id, "status": e.status, "type": e.execution_type,
                        "start_ms": e.start_ms, "end_ms": e.end_ms,
                        "stop_reason": e.stop_reason, "abandoned": e.abandoned,
                    })
                })
                .collect();
            json!({"name": name, "executions": executions})
        })
        .collect();
    json!({"now_ms": emulator.now(), "pipelines": pipelines})
}

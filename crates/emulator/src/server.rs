//! HTTP: the awsJson1_1 endpoint at `POST /` and the admin API under `/_emulator/`.

use std::collections::BTreeMap;
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

use crate::api::{Answer, SqsAnswer};
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
        self.lock().endpoint = format!("http://{addr}");
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
                    // Counted at its first API call: a harness's admin requests do not count
                    // against the client it measures.
                    let counted = std::cell::Cell::new(false);
                    let service = service_fn(move |req: Request<Incoming>| {
                        if !req.uri().path().starts_with("/_emulator/") && !counted.replace(true) {
                            emulator.count_connection();
                        }
                        handle(emulator.clone(), req)
                    });
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
    let auth = AuthHeaders {
        authorization: authorization.as_deref(),
        amz_date: amz_date.as_deref(),
        date: date.as_deref(),
    };
    if crate::sts::is_sts(target.as_deref(), &body) {
        let answer = crate::sts::handle(&emulator, auth, &body);
        let mut resp = Response::new(Full::new(Bytes::from(answer.body)));
        *resp.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_REQUEST);
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
        return Ok(resp);
    }
    // The root counts every request in flight (all accounts); a world its own.
    let _in_flight = emulator.begin_request();
    if let Some(target) = target.as_deref().filter(|t| t.starts_with("AmazonSQS.")) {
        // Queues are the root account's: a central queue serves every account.
        let answer = match emulator.handle_sqs(target, auth, &body) {
            SqsAnswer::Done(answer, delay) => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                answer
            }
            // Long polling: look again every LONG_POLL_TICK until a message is visible or the
            // wait is over (on the emulator's clock, or in real time for a manual one).
            SqsAnswer::Wait(waiting) => {
                let started = tokio::time::Instant::now();
                loop {
                    tokio::time::sleep(LONG_POLL_TICK).await;
                    let last = started.elapsed() >= waiting.wait;
                    if let Some(answer) = emulator.receive_again(&waiting, last) {
                        break answer;
                    }
                }
            }
        };
        let query_error = match &answer {
            Answer::Err(e) => crate::api::sqs::query_error(e.code),
            _ => None,
        };
        return respond(answer, "application/x-amz-json-1.0").map(|mut r| {
            if let Some(q) = query_error {
                r.headers_mut()
                    .insert("x-amzn-query-error", HeaderValue::from_static(q));
            }
            r
        });
    }
    let world = match crate::sts::route(&emulator, &auth) {
        Ok(w) => w,
        Err(e) => {
            return Ok(error_response(
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
                e.code,
                &e.message,
            ));
        }
    };
    let _in_world = (!world.same_as(&emulator)).then(|| world.begin_request());
    let (answer, delay) = world.handle(target.as_deref(), auth, &body);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    respond(answer, "application/x-amz-json-1.1")
}

/// How often a long poll looks for messages again (real time).
const LONG_POLL_TICK: Duration = Duration::from_millis(20);

/// The HTTP answer of an [`Answer`].
fn respond(answer: Answer, content_type: &'static str) -> HttpResult {
    match answer {
        Answer::Ok(v) => Ok(json_response(StatusCode::OK, &v, content_type)),
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

/// `key=value` of a query string.
fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsRequest {
    /// How many accounts (ids 100000000001, ...).
    accounts: usize,
    /// Their regions.
    regions: Vec<String>,
    /// Pipelines per account and region (none: empty worlds).
    #[serde(default)]
    pipelines: Option<usize>,
    #[serde(default)]
    seed: u64,
    #[serde(default = "default_history")]
    history: usize,
    /// The external id every role requires.
    #[serde(default)]
    external_id: Option<String>,
    /// How long issued credentials last ("15m"; default: what AssumeRole asks, 1 h).
    #[serde(default, with = "humantime_serde")]
    session: Option<Duration>,
}

fn default_history() -> usize {
    5
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueRequest {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleChange {
    role_arn: String,
    denied: bool,
}

fn admin_route(
    root: &Emulator,
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
) -> Result<Value, AdminError> {
    // `?account=ID&region=R` addresses that account's world; the root (ambient) otherwise.
    let selected;
    let emulator = match (query_param(query, "account"), query_param(query, "region")) {
        (Some(a), Some(r)) => {
            if !root.accounts().roles.values().any(|role| role.account == a) {
                return Err(AdminError(
                    StatusCode::NOT_FOUND,
                    format!("no account {a}: POST /_emulator/accounts first"),
                ));
            }
            selected = root.world_of(a, r);
            &selected
        }
        (None, None) => root,
        _ => {
            return Err(AdminError(
                StatusCode::BAD_REQUEST,
                "give both account= and region=".into(),
            ));
        }
    };
    Ok(match (method.as_str(), path) {
        ("POST", "accounts") => {
            let r: AccountsRequest = parse(body)?;
            let fleet = r.pipelines.map(|pipelines| FleetSpec {
                pipelines,
                seed: r.seed,
                history: r.history,
            });
            let roles = root.add_accounts(
                r.accounts,
                &r.regions,
                fleet,
                r.external_id.as_deref(),
                r.session,
            );
            json!({"roles": roles})
        }
        ("GET", "accounts") => accounts_json(root),
        ("PUT", "roles") => {
            let change: RoleChange = parse(body)?;
            if !root.set_role_denied(&change.role_arn, change.denied) {
                return Err(AdminError(
                    StatusCode::NOT_FOUND,
                    format!("no role {}", change.role_arn),
                ));
            }
            accounts_json(root)
        }
        ("POST", "expire-sessions") => {
            root.expire_sessions();
            json!({"ok": true})
        }
        ("GET", "calls") if query_param(query, "all") == Some("true") => {
            // Every world's calls, each tagged with its account and region (benchmarks).
            let mut calls = Vec::new();
            let mut worlds = vec![((String::new(), String::new()), root.clone())];
            worlds.extend(root.children());
            for ((account, region), w) in worlds {
                for c in w.calls() {
                    let mut v = serde_json::to_value(&c).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("account".into(), json!(account));
                        o.insert("region".into(), json!(region));
                    }
                    calls.push(v);
                }
            }
            json!({"max_in_flight": root.max_in_flight(), "connections": root.connections(), "calls": calls})
        }
        ("DELETE", "calls") if query_param(query, "all") == Some("true") => {
            root.clear_calls();
            for (_, w) in root.children() {
                w.clear_calls();
            }
            json!({"ok": true})
        }
        ("GET", "health") => json!({"ok": true}),
        ("POST", "queues") => {
            // {"name": "stopd-events"}: an empty queue of the root account.
            let q: QueueRequest = parse(body)?;
            root.create_queue(&q.name);
            json!({"queue": q.name})
        }
        ("GET", "queues") => {
            let w = root.lock();
            let now = w.clock.now();
            let queues: BTreeMap<&String, Value> = w
                .queues
                .iter()
                .map(|(name, q)| {
                    let d = q.depth(now);
                    (
                        name,
                        json!({"visible": d.visible, "in_flight": d.in_flight,
                        "delayed": d.delayed, "stats": q.stats}),
                    )
                })
                .collect();
            json!({"queues": queues})
        }
        ("POST", "events") => {
            // The feed: {"queue": "stopd-events", "loss": 0.05, "duplicate": 0.1,
            // "delay": "1s", "jitter": "2s", "reorder": true}.
            let feed: crate::events::EventFeed = parse(body)?;
            root.enable_events(feed);
            serde_json::to_value(root.feed()).unwrap_or_default()
        }
        ("GET", "events") => {
            root.publish_events();
            serde_json::to_value(root.feed()).unwrap_or_default()
        }
        ("DELETE", "events") => {
            root.disable_events();
            json!({"ok": true})
        }
        ("PUT", "calendars") => {
            // {"NAME": [[start_ms, end_ms], ...]}: each calendar's CLOSED intervals.
            let calendars: BTreeMap<String, Vec<(i64, i64)>> = parse(body)?;
            let n = calendars.len();
            emulator.lock().calendars = calendars;
            json!({"calendars": n})
        }
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
            // Refused before anything moves: a time past year 9999 cannot be written in an
            // answer (RFC 3339), and the clock never runs backwards, so it could not be undone.
            let now = emulator.now();
            let target = change
                .advance
                .map(|by| i64::try_from(by.as_millis()).map_or(None, |by| now.checked_add(by)));
            let out_of_range = |what: String| {
                AdminError(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{what} is outside the emulator's clock range (0 to {} ms, {})",
                        crate::clock::MAX_MILLIS,
                        crate::clock::rfc3339(crate::clock::MAX_MILLIS)
                    ),
                )
            };
            if let Some(t) = target
                && !t.is_some_and(crate::clock::in_range)
            {
                return Err(out_of_range("the advanced time".to_string()));
            }
            if let Some(ms) = change.set_ms
                && !crate::clock::in_range(ms)
            {
                return Err(out_of_range(format!("set_ms {ms}")));
            }
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
            let calls = emulator.calls_since(since);
            json!({"counts": emulator.call_counts(), "max_in_flight": emulator.max_in_flight(), "connections": emulator.connections(), "calls": calls})
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

fn accounts_json(root: &Emulator) -> Value {
    let reg = root.accounts();
    let now = crate::world::wall_ms();
    json!({
        "roles": reg.roles,
        "worlds": reg.worlds.keys().map(|(a, r)| json!({"account": a, "region": r})).collect::<Vec<_>>(),
        "sessions_live": reg.sessions.values().filter(|s| s.expires_wall_ms > now).count(),
        "sessions_issued": reg.sessions.len(),
        "assume_role_calls": reg.assume_role_calls,
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

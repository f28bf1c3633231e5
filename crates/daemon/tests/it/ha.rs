//! High availability on PostgreSQL, with real processes: two `stopd run` against the emulator
//! and one database; the leader killed (-9) and paused (SIGSTOP/SIGCONT). What is asserted is
//! the outcome (one leader, every execution in the freeze stopped exactly once, no call without
//! its intent, the chain intact), never a latency: failover time is a benchmark
//! (BENCHMARKS.md).
//!
//! The server is `STOPD_TEST_POSTGRES` (`.ci/run` starts one and sets it); each test makes a
//! database of its own. In CI (`CI` set) a test that cannot reach it fails; elsewhere, without
//! the variable, it is skipped with a note.

use std::collections::HashMap;
use std::process::Child;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use sqlx::Connection;

use crate::common::{Env, assert_ok, fleet, rfc, signal, text, wait_exit, wait_for};

/// A PostgreSQL database of this test's own, dropped at the end: its URL without a password
/// (the password goes through `database_password_file`, as in production).
struct Pg {
    server: String,
    name: String,
    url: String,
    password: String,
}

impl Pg {
    async fn new() -> Option<Pg> {
        let Ok(server) = std::env::var("STOPD_TEST_POSTGRES") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but STOPD_TEST_POSTGRES is not: the HA tests need PostgreSQL"
            );
            eprintln!("skipped: STOPD_TEST_POSTGRES is not set (no PostgreSQL server to test on)");
            return None;
        };
        let mut conn = sqlx::PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL server: {e}"));
        let name = format!("stopd_ha_{}_{}", std::process::id(), rand_suffix());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let _ = conn.close().await;
        let mut url = url::Url::parse(&server).unwrap();
        let password = url.password().unwrap_or_default().to_owned();
        url.set_password(None).unwrap();
        url.set_path(&format!("/{name}"));
        Some(Pg {
            server,
            name,
            url: url.into(),
            password,
        })
    }

    async fn drop_database(&self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.server).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
        }
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish() % 1_000_000
}

/// Writes the policy of node `node` (`stopd-NODE.toml`): the shared database, a 2 s lease,
/// a sweep every 2 s (a paused leader wakes with a sweep overdue, and tries it), and a freeze
/// in force now on every pipeline.
fn write_node_config(env: &Env, pg: &Pg, node: &str) -> std::path::PathBuf {
    write_node_config_with(env, pg, node, "")
}

/// [`write_node_config`] with `tail` appended (a `[[notify]]` table).
fn write_node_config_with(env: &Env, pg: &Pg, node: &str, tail: &str) -> std::path::PathBuf {
    let secret = env.dir.path().join("db-password");
    std::fs::write(&secret, format!("{}\n", pg.password)).unwrap();
    let now = Utc::now();
    let text = format!(
        "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n\n\
         [daemon]\ndatabase = \"{url}\"\ndatabase_password_file = \"{secret}\"\nschedule = \"*/2 * * * * *\"\n\n\
         [ha]\nnode = \"{node}\"\nlease = \"2s\"\n\n\
         [[freeze]]\nname = \"release\"\nstart = \"{start}\"\nend = \"{end}\"\nmode = \"abandon\"\n{tail}",
        endpoint = env.server.endpoint_url(),
        url = pg.url,
        secret = secret.display(),
        start = rfc(now - chrono::Duration::hours(1)),
        end = rfc(now + chrono::Duration::hours(2)),
    );
    let path = env.dir.path().join(format!("stopd-{node}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn_node(env: &Env, config: &std::path::Path) -> Child {
    env.command(&["run"])
        .env("STOPD_CONFIG", config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("stopd starts")
}

async fn status(env: &Env, config: &std::path::Path) -> Value {
    let mut c = env.command(&["status", "--format", "json"]);
    c.env("STOPD_CONFIG", config);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    // Before the first node has migrated the database, status says it holds no audit log
    // (and prints no JSON): read as null, and asked again.
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Waits until `config`'s status names `leader` as the node holding the lease.
async fn wait_for_leader(env: &Env, config: &std::path::Path, leader: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(env, config).await;
        if s["ha"]["leader"] == leader {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{leader} never led: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// StopPipelineExecution calls per execution id.
fn stop_calls(env: &Env) -> HashMap<String, usize> {
    let mut calls = HashMap::new();
    for c in env.emulator.calls() {
        if c.operation == "StopPipelineExecution"
            && let Some(id) = c.execution_id
        {
            *calls.entry(id).or_default() += 1;
        }
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_enforce_as_one_through_a_kill_and_a_pause() {
    let Some(pg) = Pg::new().await else { return };
    let env = Env::new(&fleet(&[
        ("prod-web", "prod"),
        ("prod-api", "prod"),
        ("prod-db", "prod"),
    ]))
    .await;
    // Both nodes notify one receiver: only the leader delivers, and a takeover is announced.
    let hook = crate::notify::Receiver::start(false).await;
    let notify = format!(
        "[[notify]]\nname = \"ops\"\nurl = \"{}\"\nevents = [\"stopped\", \"leader_changed\"]\n",
        hook.url()
    );
    let a = write_node_config_with(&env, &pg, "a", &notify);
    let b = write_node_config_with(&env, &pg, "b", &notify);

    // A starts first and leads (epoch 1); it stops the three executions in the freeze.
    let node_a = spawn_node(&env, &a);
    let s = wait_for_leader(&env, &a, "a").await;
    assert_eq!(s["ha"]["role"], "leader", "{s}");
    assert_eq!(s["ha"]["epoch"], 1, "{s}");
    assert!(wait_for(Duration::from_secs(20), || stop_calls(&env).len() == 3).await);

    // B stands by: the status of B's configuration says so, and names A.
    let node_b = spawn_node(&env, &b);
    let s = status(&env, &b).await;
    assert_eq!(s["ha"]["node"], "b", "{s}");
    assert_eq!(s["ha"]["role"], "standby", "{s}");
    assert_eq!(s["ha"]["leader"], "a", "{s}");
    let mut c = env.command(&["status"]);
    c.env("STOPD_CONFIG", &b);
    let table = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert!(
        text(&table.stdout).contains("b stands by; a leads (epoch 1)"),
        "{}",
        text(&table.stdout)
    );

    // A dies (kill -9: no clean stop, its lease left to expire). B takes over and stops what
    // started meanwhile.
    signal(&node_a, "KILL");
    let _ = wait_exit(node_a, Duration::from_secs(10)).await;
    env.emulator.start_execution("prod-web").unwrap();
    env.emulator.start_execution("prod-api").unwrap();
    let s = wait_for_leader(&env, &b, "b").await;
    assert_eq!(s["ha"]["role"], "leader", "{s}");
    assert_eq!(s["ha"]["epoch"], 2, "{s}");
    assert!(
        wait_for(Duration::from_secs(20), || stop_calls(&env).len() == 5).await,
        "{:?}",
        stop_calls(&env)
    );

    // B is paused (a frozen VM): its lease expires, A comes back and takes over (epoch 3),
    // and stops what started meanwhile. When B wakes it must not record or call anything.
    signal(&node_b, "STOP");
    let node_a = spawn_node(&env, &a);
    let s = wait_for_leader(&env, &a, "a").await;
    assert_eq!(s["ha"]["epoch"], 3, "{s}");
    env.emulator.start_execution("prod-db").unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || stop_calls(&env).len() == 6).await,
        "{:?}",
        stop_calls(&env)
    );
    env.emulator.start_execution("prod-web").unwrap();
    signal(&node_b, "CONT");
    // The new execution is stopped once, by A (B's intent would be fenced out).
    assert!(
        wait_for(Duration::from_secs(20), || stop_calls(&env).len() == 7).await,
        "{:?}",
        stop_calls(&env)
    );
    // B has woken, found its lease taken and stood by: A still leads.
    let s = wait_for_leader(&env, &b, "a").await;
    assert_eq!(s["ha"]["role"], "standby", "{s}");

    // Every stop is notified by the node that leads now (what a node killed or paused left in
    // the outbox included), before the nodes are stopped.
    assert!(
        wait_for(Duration::from_secs(20), || {
            let ids: std::collections::HashSet<String> = hook
                .events("stopped")
                .iter()
                .filter_map(|e| e["execution_id"].as_str().map(str::to_owned))
                .collect();
            ids.len() == 7
        })
        .await,
        "{:?}",
        hook.events("stopped")
    );
    let mut logs = Vec::new();
    for node in [node_a, node_b] {
        signal(&node, "TERM");
        let out = wait_exit(node, Duration::from_secs(30)).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        logs.push(text(&out.stderr));
    }
    // B said, loudly, that it no longer led once it woke.
    assert!(logs[1].contains("this node no longer leads"), "{}", logs[1]);

    // Each takeover announced once, by the node that took the lead (a, b, a: epochs 1 to 3),
    // and each stop notified exactly once whichever node made it.
    let leaders: std::collections::BTreeSet<(String, i64)> = hook
        .events("leader_changed")
        .iter()
        .map(|e| {
            (
                e["node"].as_str().unwrap().to_owned(),
                e["epoch"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        leaders,
        [("a".into(), 1), ("a".into(), 3), ("b".into(), 2)].into(),
        "{leaders:?}"
    );
    // At least once each (the contract): a node killed (-9) or paused after posting a
    // notification but before recording its delivery has it posted again by the next leader,
    // so duplicates are allowed here, where every change of leader is abnormal.
    let notified: std::collections::HashSet<String> = hook
        .events("stopped")
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(notified.len(), 7, "{notified:?}");

    // Nothing doubled, nothing lost: one call per execution, each with exactly one intent and
    // one outcome in the log.
    let calls = stop_calls(&env);
    assert!(calls.values().all(|&n| n == 1), "{calls:?}");
    let mut c = env.command(&["report", "--format", "json"]);
    c.env("STOPD_CONFIG", &a);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert_ok(&out);
    let report: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut recorded: HashMap<String, usize> = HashMap::new();
    for r in &report {
        assert_eq!(r["outcome"], "stopped", "{r}");
        *recorded
            .entry(r["execution_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(recorded.len(), 7, "{report:?}");
    assert!(recorded.values().all(|&n| n == 1), "{recorded:?}");
    assert!(calls.keys().all(|id| recorded.contains_key(id)));
    let mut c = env.command(&["verify"]);
    c.env("STOPD_CONFIG", &a);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert_ok(&out);
    pg.drop_database().await;
}

/// `run --once` on PostgreSQL sweeps only as the leader: beside a running leader it refuses
/// (exit 1, naming the leader) and calls nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_refuses_beside_a_leader() {
    let Some(pg) = Pg::new().await else { return };
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    let a = write_node_config(&env, &pg, "a");
    let b = write_node_config(&env, &pg, "b");
    let node_a = spawn_node(&env, &a);
    wait_for_leader(&env, &a, "a").await;
    assert!(wait_for(Duration::from_secs(20), || stop_calls(&env).len() == 1).await);
    let mut c = env.command(&["run", "--once"]);
    c.env("STOPD_CONFIG", &b);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("\"a\" (epoch 1"),
        "{}",
        text(&out.stderr)
    );
    signal(&node_a, "TERM");
    let out = wait_exit(node_a, Duration::from_secs(30)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A gave up its lease when it stopped: `run --once` now leads for its sweep (epoch 2).
    let mut c = env.command(&["run", "--once"]);
    c.env("STOPD_CONFIG", &b);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert_ok(&out);
    let s = status(&env, &b).await;
    assert_eq!(s["ha"]["epoch"], 2, "{s}");
    assert_eq!(s["ha"]["leader"], Value::Null, "released at the end: {s}");
    pg.drop_database().await;
}

/// `[ha]` with SQLite, and a PostgreSQL URL that does not parse, are configuration errors
/// (78) naming the table or key; a database that cannot be reached at start is exit 1 naming
/// host and port.
#[tokio::test]
async fn ha_configuration_errors_and_an_unreachable_database() {
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    env.write_config("", "[ha]\nnode = \"a\"\n");
    let out = env.stopd(&["check"]).await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("[ha] needs a PostgreSQL"),
        "{}",
        text(&out.stderr)
    );

    let path = env.config_path();
    std::fs::write(
        &path,
        "[daemon]\ndatabase = \"postgres://stopd@db.internal:notaport/stopd\"\n",
    )
    .unwrap();
    let out = env.stopd(&["check"]).await;
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("daemon.database"),
        "{}",
        text(&out.stderr)
    );

    std::fs::write(
        &path,
        format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n[daemon]\ndatabase = \"postgres://stopd@127.0.0.1:1/stopd\"\n[ha]\nlease = \"2s\"\n",
            env.server.endpoint_url()
        ),
    )
    .unwrap();
    let out = env.stopd(&["run", "--once"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot reach the audit database at 127.0.0.1:1"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(env.stop_calls(), 0);
}

/// A TCP proxy in front of the PostgreSQL server that the test can take down (every connection
/// dropped, new ones refused) and bring back: the database restarted under a running node.
struct Proxy {
    port: u16,
    to: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start(to: &str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut p = Proxy {
            port,
            to: to.to_owned(),
            task: None,
        };
        p.serve(listener);
        p
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let to = self.to.clone();
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let to = to.clone();
                conns.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    /// Every connection dropped, and the port closed (a connection is refused).
    fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Listening again on the same port.
    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.serve(listener);
    }
}

/// The database goes away under a running leader and comes back: the leader steps down (it
/// cannot renew), says so loudly, keeps trying, and leads again once the database answers;
/// what started meanwhile is stopped then. Nothing is stopped while no node leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_lost_and_back_under_a_running_leader() {
    let Some(pg) = Pg::new().await else { return };
    let server = url::Url::parse(&pg.url).unwrap();
    let mut proxy = Proxy::start(&format!(
        "{}:{}",
        server.host_str().unwrap(),
        server.port().unwrap_or(5432)
    ))
    .await;
    let mut through = server.clone();
    through.set_port(Some(proxy.port)).unwrap();
    let proxied = Pg {
        server: pg.server.clone(),
        name: pg.name.clone(),
        url: through.into(),
        password: pg.password.clone(),
    };
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    let a = write_node_config(&env, &proxied, "a");
    let node_a = spawn_node(&env, &a);
    wait_for_leader(&env, &a, "a").await;
    assert!(wait_for(Duration::from_secs(20), || stop_calls(&env).len() == 1).await);

    proxy.down();
    env.emulator.start_execution("prod-web").unwrap();
    // Longer than the lease (2 s) and a few sweeps (every 2 s): nothing can be recorded, so
    // nothing is stopped.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(stop_calls(&env).len(), 1, "{:?}", stop_calls(&env));

    proxy.up().await;
    // The lease is taken again (epoch 2) and the execution that started meanwhile stopped.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(&env, &a).await;
        if s["ha"]["leader"] == "a" && s["ha"]["epoch"] == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a never led again: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        wait_for(Duration::from_secs(20), || stop_calls(&env).len() == 2).await,
        "{:?}",
        stop_calls(&env)
    );
    signal(&node_a, "TERM");
    let out = wait_exit(node_a, Duration::from_secs(30)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = text(&out.stderr);
    assert!(log.contains("this node no longer leads"), "{log}");
    assert!(log.contains("cannot be reached"), "{log}");
    pg.drop_database().await;
}

/// A node whose database fails right after it connected (its start cannot be recorded: a
/// managed database's failover, a restart) stands by and tries again with backoff, instead of
/// exiting 1; once the database takes writes again it records its start, leads, and enforces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_in_a_database_blip_stands_by_and_tries_again() {
    let Some(pg) = Pg::new().await else { return };
    let mut url = url::Url::parse(&pg.server).unwrap();
    url.set_path(&format!("/{}", pg.name));
    // Every `start` record fails as on a database that is restarting (SQLSTATE 57P03,
    // cannot_connect_now: a blip, tried again); a sequence, which a rollback does not undo,
    // counts the tries.
    let mut conn = blip_every_start(&url, "ERRCODE = 'cannot_connect_now', ").await;
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    let a = write_node_config(&env, &pg, "a");
    let mut node = spawn_node(&env, &a);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let tries: i64 =
            sqlx::query_scalar("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM blips")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert!(
            node.try_wait().unwrap().is_none(),
            "the node exited after {tries} tries"
        );
        if tries >= 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{tries} tries");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing is enforced before the start is on record.
    assert_eq!(stop_calls(&env).len(), 0);

    // The database takes writes again: the node starts, leads and stops the execution.
    sqlx::query("DROP TRIGGER blip ON lifecycle_events")
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    wait_for_leader(&env, &a, "a").await;
    assert!(wait_for(Duration::from_secs(20), || stop_calls(&env).len() == 1).await);
    signal(&node, "TERM");
    let out = wait_exit(node, Duration::from_secs(30)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = text(&out.stderr);
    assert!(
        log.contains("cannot record the start while starting"),
        "{log}"
    );
    assert!(log.contains("this node stands by and tries again"), "{log}");
    pg.drop_database().await;
}

/// Makes every insert into `lifecycle_events` of the database at `url` (migrated first) fail
/// with `RAISE EXCEPTION USING {using}MESSAGE = 'the database blipped'`, counting the tries in
/// the sequence `blips`; the connection that did it, to read the count.
async fn blip_every_start(url: &url::Url, using: &str) -> sqlx::PgConnection {
    let store = stopd_audit::Store::open(url.as_str()).await.unwrap();
    store.close().await;
    let mut conn = sqlx::PgConnection::connect(url.as_str()).await.unwrap();
    for sql in [
        "CREATE SEQUENCE blips".to_owned(),
        format!(
            "CREATE FUNCTION blip() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM nextval('blips'); \
             RAISE EXCEPTION USING {using}MESSAGE = 'the database blipped'; END $$"
        ),
        "CREATE TRIGGER blip BEFORE INSERT ON lifecycle_events \
         FOR EACH STATEMENT EXECUTE FUNCTION blip()"
            .to_owned(),
    ] {
        sqlx::query(&sql).execute(&mut conn).await.unwrap();
    }
    conn
}

/// A node whose start fails with an error that is not a blip (here a plain `RAISE`, SQLSTATE
/// P0001; in production a role without INSERT, a constraint a bug violates) does not stand by
/// for ever: it exits 1 with the error, after one try, as on a single host, so that systemd's
/// `Restart=on-failure` sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_start_fails_for_good_exits_1() {
    let Some(pg) = Pg::new().await else { return };
    let mut url = url::Url::parse(&pg.server).unwrap();
    url.set_path(&format!("/{}", pg.name));
    let mut conn = blip_every_start(&url, "").await;
    let env = Env::new(&fleet(&[("prod-web", "prod")])).await;
    let a = write_node_config(&env, &pg, "a");
    let node = spawn_node(&env, &a);
    let out = wait_exit(node, Duration::from_secs(30)).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let log = text(&out.stderr);
    assert!(log.contains("the database blipped"), "{log}");
    assert!(
        !log.contains("this node stands by and tries again"),
        "{log}"
    );
    let tries: i64 = sqlx::query_scalar("SELECT last_value FROM blips")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(tries, 1);
    assert_eq!(stop_calls(&env).len(), 0);
    let _ = conn.close().await;
    pg.drop_database().await;
}

//! `stopd status`: is a daemon running on this database, is it healthy, and what is in force.
//!
//! Running means a process holds the database's run lock ([`crate::runtime::lock`]); the pid is the one
//! the lock file records. Healthy means running and a good sweep ended within three schedule
//! intervals ([`crate::config::DaemonSettings::stale_after`], the same rule as `/healthz`), the
//! last good sweep being the one [`Store::last_good_sweep`] reads (runs of quiet sweeps, the open one included).
//! The policy in force is the newest `policy_loads` row, which the daemon writes at start and at
//! each good reload ([`crate::runtime::status::record_policy_load`]); the file on disk is hashed
//! the same way ([`policy_hash`]), so an edited file not yet reloaded shows as "reload pending".

use std::fs::{OpenOptions, TryLockError};
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use stopd_rules::{Policy, RuleKind, Trigger};

use crate::clock::Clock;
use crate::config::{Config, policy_hash};
use stopd_audit::{Store, parse_ts, ts};

/// Below this many free bytes the audit database's filesystem counts as full: a commit writes
/// several pages to the write-ahead log, and an fsync'ed log has no use for a nearly full disk.
const DISK_FULL_BELOW: u64 = 1024 * 1024;

/// The directory of the audit database (where its write-ahead log grows).
fn database_dir(database: &Path) -> &Path {
    match database.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Bytes an unprivileged process may still write on the audit database's filesystem.
fn free_bytes(database: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(database_dir(database)).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Whether a `stopd run` is running on the database of `cfg`, and its pid: on SQLite, whether
/// one holds the file's lock (and the pid its lock file records); on PostgreSQL, whether a node
/// holds the leader's lease (and the pid the lease row records, on that node's host).
pub async fn running(cfg: &Config, store: &Store) -> (bool, Option<u32>) {
    match cfg.daemon.database.path() {
        Some(path) => daemon_running(path),
        None => match store.lease().await {
            Ok(Some(lease)) if lease.held() => (true, u32::try_from(lease.pid).ok()),
            _ => (false, None),
        },
    }
}

/// Whether a `stopd run` holds the lock of `database`, and the pid its lock file records.
pub fn daemon_running(database: &Path) -> (bool, Option<u32>) {
    let path = crate::runtime::lock::lock_path(database);
    let Ok(mut file) = OpenOptions::new().read(true).open(&path) else {
        return (false, None);
    };
    // A shared lock conflicts only with the daemon's exclusive one, and is let go at once.
    match file.try_lock_shared() {
        Ok(()) => (false, None),
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            (true, text.trim().parse().ok())
        }
        Err(TryLockError::Error(_)) => (false, None),
    }
}

/// One rule in force now.
#[derive(Debug, Clone, Serialize)]
pub struct InForce {
    /// Rule name (`adhoc-ID` for an ad-hoc freeze).
    pub rule: String,
    /// `freeze`, `allow` (outside an `[[allow]]` rule's windows) or `timeout`.
    pub kind: &'static str,
    /// For a freeze: when its window ends (RFC 3339 UTC).
    pub until: Option<String>,
}

/// `stopd status --format json`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// A `stopd run` holds the database's lock.
    pub running: bool,
    /// Its pid, as its lock file records it.
    pub pid: Option<u32>,
    /// Running and a good sweep within three schedule intervals.
    pub healthy: bool,
    /// Why not healthy.
    pub problem: Option<String>,
    /// When the last sweep ended.
    pub last_sweep_at: Option<String>,
    /// Whether it was good (null too when it was interrupted: neither good nor failed).
    pub last_sweep_ok: Option<bool>,
    /// `ok`, `failed` or `interrupted` (a clean shutdown cut it short).
    pub last_sweep_result: Option<&'static str>,
    /// Its error, if it failed.
    pub last_sweep_error: Option<String>,
    /// Seconds since it ended.
    pub last_sweep_age_seconds: Option<i64>,
    /// When the last good sweep ended.
    pub last_success_at: Option<String>,
    /// Stale after this many seconds without a good sweep.
    pub stale_after_seconds: u64,
    /// SHA-256 of the policy file the daemon last loaded.
    pub policy_hash: Option<String>,
    /// When it loaded it.
    pub policy_loaded_at: Option<String>,
    /// SHA-256 of the file on disk now.
    pub policy_on_disk_hash: String,
    /// The file on disk differs from the policy in force.
    pub reload_pending: bool,
    /// Why the file on disk does not validate (a reload would be refused); null when it does.
    /// Then `rules_in_force` holds only ad-hoc freezes.
    pub policy_on_disk_error: Option<String>,
    /// Rules in force now (timeouts always; freezes with an open window).
    pub rules_in_force: Vec<InForce>,
    /// Ad-hoc freezes in force.
    pub adhoc_freezes: Vec<stopd_audit::FreezeRecord>,
    /// Transitions stopd holds closed: `pipeline/stage`.
    pub gates_closed: Vec<String>,
    /// Exemptions in force: names.
    pub exemptions_active: Vec<String>,
    /// Finish stops waiting for their escalation deadline.
    pub pending_escalations: usize,
    /// Bytes free to the daemon on the audit database's filesystem (`None`: unknown).
    pub database_free_bytes: Option<u64>,
    /// With `[[account]]`s: each configured account and region's last sweep (`at` empty:
    /// not swept yet).
    pub accounts: Vec<stopd_audit::PlaceSweep>,
    /// PostgreSQL: leadership (DESIGN.md); absent on SQLite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ha: Option<Ha>,
    /// With `[events]`: the consumer's view of its queue (the last message received, the
    /// queue's depth, why it cannot be read), as the daemon last recorded it (at most a minute
    /// old while all goes well); `null` before the daemon recorded any.
    pub events: Option<stopd_audit::EventQueueState>,
}

/// `status`'s `ha` object: the role and node of the node this configuration names, and the
/// node that holds the lease.
#[derive(Debug, Clone, Serialize)]
pub struct Ha {
    /// `leader` when this configuration's node holds the lease now, else `standby`.
    pub role: &'static str,
    /// This configuration's node (`[ha] node`, or the host name).
    pub node: String,
    /// The lease's epoch (0: nobody ever led).
    pub epoch: i64,
    /// The node that holds the lease now (null: none, the lease expired).
    pub leader: Option<String>,
    /// When the lease ends unless renewed (RFC 3339 UTC).
    pub lease_expires_at: Option<String>,
}

/// Rules of `policy` in force at `now`.
fn rules_in_force(policy: &Policy, now: DateTime<Utc>) -> Vec<InForce> {
    let windows = policy.windows(now, now + chrono::Duration::seconds(1));
    policy
        .rules()
        .iter()
        .filter_map(|r| match (&r.kind, &r.trigger) {
            (RuleKind::Timeout, _) => Some(InForce {
                rule: r.name.clone(),
                kind: "timeout",
                until: None,
            }),
            (_, Trigger::Freeze { .. }) => windows
                .iter()
                .find(|w| w.rule == r.name && w.window.start <= now && now < w.window.end)
                .map(|w| InForce {
                    rule: r.name.clone(),
                    // An allow rule is in force while none of its windows is open.
                    kind: if r.is_allow() { "allow" } else { "freeze" },
                    until: (!w.without_gap).then(|| ts(w.window.end)),
                }),
            _ => None,
        })
        .collect()
}

/// The `[[account]]` x region pairs of the policy file, in its order.
fn configured(cfg: &Config) -> Vec<(String, String)> {
    cfg.accounts
        .iter()
        .flat_map(|a| {
            a.regions
                .iter()
                .flatten()
                .map(|r| (a.name.clone(), r.clone()))
        })
        .collect()
}

/// Reads the status of the daemon of `cfg` at `now`.
pub async fn read(cfg: &Config, now: DateTime<Utc>) -> Result<Status> {
    let store = if cfg.daemon.database.exists() {
        Some(Store::open_read_only(crate::runtime::secrets::database(cfg)?).await?)
    } else {
        None
    };
    let (running, pid) = match (&store, cfg.daemon.database.path()) {
        (_, Some(path)) => daemon_running(path),
        (Some(store), None) => running(cfg, store).await,
        (None, None) => (false, None),
    };
    let ha = match (&store, &cfg.ha) {
        (Some(store), Some(ha)) => {
            let lease = store.lease().await?;
            let held = lease.as_ref().filter(|l| l.held());
            Some(Ha {
                role: if held.is_some_and(|l| l.holder == ha.node) {
                    "leader"
                } else {
                    "standby"
                },
                node: ha.node.clone(),
                epoch: lease.as_ref().map_or(0, |l| l.epoch),
                leader: held.map(|l| l.holder.clone()),
                lease_expires_at: lease.as_ref().map(|l| ts(l.expires_at())),
            })
        }
        _ => None,
    };
    let stale = cfg.daemon.stale_after(now);
    let on_disk = std::fs::read(&cfg.path)
        .map(|b| policy_hash(&b))
        .with_context(|| format!("cannot read the policy file {}", cfg.path.display()))?;
    let mut status = Status {
        running,
        pid,
        healthy: false,
        problem: None,
        last_sweep_at: None,
        last_sweep_ok: None,
        last_sweep_result: None,
        last_sweep_error: None,
        last_sweep_age_seconds: None,
        last_success_at: None,
        stale_after_seconds: stale.as_secs(),
        policy_hash: None,
        policy_loaded_at: None,
        policy_on_disk_hash: on_disk,
        reload_pending: false,
        policy_on_disk_error: cfg.policy_error.as_ref().map(ToString::to_string),
        rules_in_force: Vec::new(),
        adhoc_freezes: Vec::new(),
        gates_closed: Vec::new(),
        exemptions_active: Vec::new(),
        pending_escalations: 0,
        database_free_bytes: cfg.daemon.database.path().and_then(free_bytes),
        accounts: Vec::new(),
        ha,
        events: None,
    };
    let mut last_success = None;
    if let Some(store) = &store {
        if let Some(stopd_audit::LastSweep {
            finished_at: at,
            error,
            errors,
            result,
        }) = store.last_sweep().await?
        {
            let result =
                stopd_audit::sweep_result(true, result.as_deref(), errors, error.is_some());
            status.last_sweep_age_seconds = Some((now - parse_ts(&at)?).num_seconds());
            status.last_sweep_at = Some(at);
            // An interrupted sweep is neither good nor failed.
            status.last_sweep_ok = match result {
                Some("interrupted") => None,
                r => Some(r == Some("ok")),
            };
            status.last_sweep_result = result;
            status.last_sweep_error = error;
        }
        // Quiet sweeps are grouped into runs, the newest one still open: its last sweep is
        // the last sweep when it ended after the last one written whole.
        if let Some(at) = store.last_quiet_sweep().await?
            && status.last_sweep_at.as_ref().is_none_or(|last| at > *last)
        {
            status.last_sweep_age_seconds = Some((now - parse_ts(&at)?).num_seconds());
            status.last_sweep_at = Some(at);
            status.last_sweep_ok = Some(true);
            status.last_sweep_result = Some("ok");
            status.last_sweep_error = None;
        }
        if let Some(at) = store.last_good_sweep().await? {
            last_success = Some(at);
            status.last_success_at = Some(ts(at));
        }
        if let Some(load) = store.last_policy_load().await? {
            status.reload_pending = running && load.hash != status.policy_on_disk_hash;
            status.policy_hash = Some(load.hash);
            status.policy_loaded_at = Some(load.at);
        }
        let adhoc = store.active_freezes(now).await?;
        let effective = crate::runtime::freezes::with_freezes(&cfg.policy, &adhoc)?;
        status.rules_in_force = rules_in_force(&effective, now);
        status.adhoc_freezes = adhoc;
        let mut gates: Vec<String> = store
            .last_gates_everywhere()
            .await?
            .into_iter()
            .filter(|(.., g)| g.ours())
            .map(|(account, region, p, s, _)| {
                if account == stopd_audit::Place::DEFAULT_ACCOUNT {
                    format!("{p}/{s}")
                } else {
                    format!("{account} {region} {p}/{s}")
                }
            })
            .collect();
        gates.sort();
        status.gates_closed = gates;
        status.exemptions_active = store
            .active_exemptions(now)
            .await?
            .into_iter()
            .map(|e| e.name)
            .collect();
        status.pending_escalations = store.pending_escalations().await?;
        if let Some(e) = &cfg.events {
            status.events = store
                .event_queues()
                .await?
                .into_iter()
                .find(|q| q.queue_url == e.queue_url);
        }
        if !cfg.accounts.is_empty() {
            let swept = store.place_sweeps().await?;
            status.accounts = configured(cfg)
                .into_iter()
                .map(|(account, region)| {
                    swept
                        .iter()
                        .find(|p| p.account == account && p.region == region)
                        .cloned()
                        .unwrap_or(stopd_audit::PlaceSweep {
                            account,
                            region,
                            at: String::new(),
                            ok: false,
                            error: None,
                            last_ok_at: None,
                        })
                })
                .collect();
        }
        store.close().await;
    } else {
        status.rules_in_force = rules_in_force(&cfg.policy, now);
    }
    status.exemptions_active.extend(
        cfg.policy
            .exemptions()
            .iter()
            .filter(|e| e.active_at(now))
            .map(|e| e.name.clone()),
    );
    status.problem = if !running && cfg.daemon.database.is_postgres() {
        Some("no node holds the leader's lease: no `stopd run` leads on this database".into())
    } else if !running {
        Some("no `stopd run` holds the database's lock: the daemon is not running".into())
    } else {
        match last_success {
            None => Some("no successful sweep yet".into()),
            Some(t) if (now - t).to_std().unwrap_or_default() > stale => Some(format!(
                "stale: no successful sweep for {} (more than three schedule intervals)",
                crate::cli::time::human(now - t)
            )),
            Some(_) => None,
        }
    };
    // A daemon that cannot write its audit log records no sweep and goes stale; name the cause
    // when it is a full disk (the database cannot say so itself: it cannot be written).
    if let (true, Some(problem), Some(free), Some(path)) = (
        running,
        &status.problem,
        status.database_free_bytes,
        cfg.daemon.database.path(),
    ) && free < DISK_FULL_BELOW
    {
        status.problem = Some(format!(
            "disk full: {} has {free} bytes free, so the daemon cannot write its audit log ({problem})",
            database_dir(path).display()
        ));
    }
    status.healthy = status.problem.is_none();
    Ok(status)
}

/// `stopd status [--format table|json]`: exit 0 healthy, 1 not running or stale.
pub async fn command(
    cfg: &Config,
    json: bool,
    tz: Option<chrono_tz::Tz>,
    clock: &dyn Clock,
) -> Result<ExitCode> {
    let now = clock.now();
    let s = read(cfg, now).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", render(&s, tz));
        print!("{}", render_accounts(&s.accounts, now, tz));
        if cfg.events.is_some() {
            print!("{}", render_events(s.events.as_ref(), now));
        }
    }
    Ok(if s.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The table form: one fact a line; audit times in `tz` when given (JSON stays UTC).
fn render(s: &Status, tz: Option<chrono_tz::Tz>) -> String {
    use crate::cli::output::escape;
    let at = |t: &str| {
        tz.and_then(|tz| crate::cli::output::in_zone(t, tz))
            .unwrap_or_else(|| t.to_string())
    };
    let mut out = String::new();
    // Long values (the gates held, the rules in force) wrap under their column, to the width
    // tables fit (`COLUMNS`, else the terminal, else 100).
    let width = Some(crate::cli::output::terminal_width());
    let indent = " ".repeat(21);
    let mut line = |k: &str, v: String| {
        out.push_str(&crate::cli::output::paragraph(
            &format!("{k:<20} "),
            &v,
            &indent,
            width,
        ));
        out.push('\n');
    };
    line(
        "daemon",
        match (s.running, s.pid) {
            (true, Some(pid)) => format!("running (pid {pid})"),
            (true, None) => "running".into(),
            (false, _) => "NOT RUNNING".into(),
        },
    );
    if let Some(ha) = &s.ha {
        let until = ha.lease_expires_at.as_deref().map(at).unwrap_or_default();
        line(
            "leadership",
            match &ha.leader {
                Some(l) if *l == ha.node => format!(
                    "{} leads (epoch {}, lease until {until})",
                    escape(&ha.node),
                    ha.epoch
                ),
                Some(l) => format!(
                    "{} stands by; {} leads (epoch {})",
                    escape(&ha.node),
                    escape(l),
                    ha.epoch
                ),
                None => format!(
                    "{} stands by; NO NODE LEADS (epoch {})",
                    escape(&ha.node),
                    ha.epoch
                ),
            },
        );
    }
    line(
        "health",
        match &s.problem {
            None => "ok".into(),
            Some(p) => format!("FAILING: {p}"),
        },
    );
    line(
        "last sweep",
        match (
            &s.last_sweep_at,
            s.last_sweep_result,
            s.last_sweep_age_seconds,
        ) {
            (Some(t), Some(result), Some(age)) => format!(
                "{} ({} ago), {}",
                at(t),
                crate::cli::time::human(chrono::Duration::seconds(age)),
                if result == "ok" {
                    "ok".to_string()
                } else if result == "interrupted" {
                    "interrupted (a clean shutdown cut it short)".to_string()
                } else {
                    format!(
                        "failed: {}",
                        escape(s.last_sweep_error.as_deref().unwrap_or(""))
                    )
                }
            ),
            _ => "none".into(),
        },
    );
    line(
        "policy in force",
        match (&s.policy_hash, &s.policy_loaded_at) {
            (Some(h), Some(t)) => format!("sha256:{} (loaded {})", &h[..h.len().min(16)], at(t)),
            _ => "unknown (no daemon has recorded one)".into(),
        },
    );
    line(
        "policy on disk",
        format!(
            "sha256:{}{}",
            &s.policy_on_disk_hash[..16],
            match (&s.policy_on_disk_error, s.reload_pending) {
                (Some(_), _) => " (DOES NOT VALIDATE: a reload would be refused)",
                (None, true) => " (differs: reload pending)",
                (None, false) => "",
            }
        ),
    );
    let rules: Vec<String> = s
        .rules_in_force
        .iter()
        .map(|r| match &r.until {
            Some(u) => format!("{} ({} until {})", r.rule, r.kind, at(u)),
            None => format!("{} ({})", r.rule, r.kind),
        })
        .collect();
    if s.policy_on_disk_error.is_some() {
        line(
            "rules in force",
            format!(
                "unknown (the file does not validate); ad-hoc: {}",
                list(&rules)
            ),
        );
    } else {
        line("rules in force", list(&rules));
    }
    let adhoc: Vec<String> = s
        .adhoc_freezes
        .iter()
        .map(|f| {
            format!(
                "{} {}{} until {} by {}: {}",
                f.rule,
                escape(&f.pipeline),
                // An ad-hoc freeze of one account or region does not read as a global one.
                escape(&crate::cli::common::place_words(
                    f.account.as_deref(),
                    f.region.as_deref()
                )),
                at(&f.until),
                escape(&f.created_by),
                escape(&f.reason)
            )
        })
        .collect();
    line("ad-hoc freezes", list(&adhoc));
    line("gates closed", list(&s.gates_closed));
    line("exemptions active", list(&s.exemptions_active));
    line("pending escalations", s.pending_escalations.to_string());
    out
}

/// With `[[account]]`s: one line per account and region, its last sweep and how it went;
/// times in `tz` when given, as in [`render`].
fn render_accounts(
    places: &[stopd_audit::PlaceSweep],
    now: DateTime<Utc>,
    tz: Option<chrono_tz::Tz>,
) -> String {
    use crate::cli::output::escape;
    let at = |t: &str| {
        tz.and_then(|tz| crate::cli::output::in_zone(t, tz))
            .unwrap_or_else(|| t.to_string())
    };
    if places.is_empty() {
        return String::new();
    }
    let wa = places
        .iter()
        .map(|p| p.account.len())
        .max()
        .unwrap_or(0)
        .max(7);
    let wr = places
        .iter()
        .map(|p| p.region.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!(
        "\n{:<wa$}  {:<wr$}  {:<32}  RESULT\n",
        "ACCOUNT", "REGION", "LAST SWEEP"
    );
    for p in places {
        let when = match parse_ts(&p.at) {
            Ok(t) if !p.at.is_empty() => format!(
                "{} ({} ago)",
                at(&p.at),
                crate::cli::time::human((now - t).max(chrono::Duration::zero()))
            ),
            _ => "never".to_string(),
        };
        let result = if p.at.is_empty() {
            "not swept yet".to_string()
        } else if p.ok {
            "ok".to_string()
        } else {
            let mut r = format!("FAILED: {}", escape(p.error.as_deref().unwrap_or("")));
            r.push_str(&match &p.last_ok_at {
                Some(t) => format!(" (last ok {})", at(t)),
                None => " (never ok)".into(),
            });
            r
        };
        out.push_str(&format!(
            "{:<wa$}  {:<wr$}  {when:<32}  {result}\n",
            p.account, p.region
        ));
    }
    out
}

/// With `[events]`: whether events are flowing (the last message received, the queue's depth)
/// or why the queue cannot be read.
fn render_events(q: Option<&stopd_audit::EventQueueState>, now: DateTime<Utc>) -> String {
    use crate::cli::output::escape;
    let ago = |t: &str| match parse_ts(t) {
        Ok(at) => format!(
            "{t} ({} ago)",
            crate::cli::time::human((now - at).max(chrono::Duration::zero()))
        ),
        Err(_) => t.to_string(),
    };
    let Some(q) = q else {
        return "\nevents: nothing recorded yet (the daemon records its queue's state within a minute of its start)\n".into();
    };
    let mut out = format!("\nevents: {}\n", escape(&q.queue_url));
    out.push_str(&format!(
        "  last event received: {}\n",
        q.last_received_at.as_deref().map_or("none yet".into(), ago)
    ));
    out.push_str(&format!(
        "  queue depth: {} (as of {})\n",
        q.depth.map_or("unknown".into(), |d| d.to_string()),
        ago(&q.at)
    ));
    if let Some(e) = &q.error {
        out.push_str(&format!(
            "  FAILING: the queue cannot be read: {}\n",
            escape(e)
        ));
    }
    out
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        format!("{}: {}", items.len(), items.join(", "))
    }
}

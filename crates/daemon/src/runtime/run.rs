//! `stopd run`: wiring the scheduler ([`crate::runtime::scheduler`]) to the world: signals, the
//! database's change counter, the SDK client, systemd notification (logging is set up by `crate::cli::logging`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sd_notify::NotifyState;
use stopd_rules::Policy;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::runtime::scheduler::{BoxFuture, Event, Scheduler, Sweeps, notify};
use crate::runtime::sweep::{self, SweepSummary, Sweeper};
use stopd_audit::Store;
use stopd_audit::events::StartedWindow;

/// How often the database's change counter is read: an exemption or freeze added with the CLI
/// is in force within about this long.
const WATCH_DATABASE_EVERY: Duration = Duration::from_secs(1);

/// `run --once` delivers pending notifications for at most this long before it exits.
const ONCE_NOTIFY_BOUND: Duration = Duration::from_secs(10);

/// A running event consumer: its stop token and task.
type Consuming = (CancellationToken, tokio::task::JoinHandle<()>);

/// The real [`Sweeps`]: sweeps against CodePipeline, recorded in the audit log.
struct Live {
    /// Discovery, stops, audit.
    sweeper: Sweeper,
    /// Cancels in-flight API calls (after the shutdown bound).
    core_cancel: CancellationToken,
    /// The calendar files the watcher compares (those of the policy in force).
    calendars: CalendarFiles,
    /// Notification deliveries while this node delivers (always on SQLite; on PostgreSQL
    /// while it leads): their stop token and tasks.
    deliveries: Option<(CancellationToken, tokio_util::task::TaskTracker)>,
    /// With `[events]`: the consumer's policy and engines, kept current.
    events: Option<crate::runtime::events::Feed>,
    /// With `[events]`: the consumer (not started), and while it consumes (always on SQLite;
    /// on PostgreSQL while this node leads) its stop token and task.
    consumer: Option<(crate::runtime::events::Consumer, Option<Consuming>)>,
    /// PostgreSQL: this node's leadership, whose campaign ends each term itself.
    leadership: Option<Arc<crate::runtime::leader::Leadership>>,
    /// The token of the term in force (SQLite: one that never fires): the engines, sweeps,
    /// consumer and deliveries of a term are built on children of it, so that the campaign,
    /// cancelling it the moment the lease is lost, stops them all without the scheduler.
    term: CancellationToken,
}

impl Live {
    /// Starts delivering the outbox of `cfg`'s targets (stopping deliveries already running).
    fn deliver(&mut self, cfg: &Config) {
        self.stop_delivering();
        let stop = self.term.child_token();
        let tracker = crate::runtime::notify::spawn(
            &self.sweeper.store,
            &cfg.notify,
            &stop,
            SharedClock::clone(&self.sweeper.clock),
        );
        self.deliveries = Some((stop, tracker));
    }

    /// Starts consuming execution events (`[events]`), unless already.
    fn consume(&mut self) {
        if let Some((consumer, running @ None)) = &mut self.consumer {
            let cancel = self.term.child_token();
            let mut c = consumer.clone();
            // It records and calls as this term's work (a handle of its epoch on PostgreSQL).
            c.store = self.sweeper.store.clone();
            let stop = cancel.clone();
            *running = Some((cancel, tokio::spawn(async move { c.run(stop).await })));
        }
    }

    /// Stops consuming events: the batch being decided finishes; what is left stays on the
    /// queue for the next consumer. Returns the task, to wait for.
    fn stop_consuming(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        let (_, running) = self.consumer.as_mut()?;
        let (cancel, task) = running.take()?;
        cancel.cancel();
        Some(task)
    }

    /// Stops delivering (what is being sent finishes; the rest waits in the outbox).
    fn stop_delivering(&mut self) {
        if let Some((stop, _)) = &self.deliveries {
            stop.cancel();
        }
    }
}

impl Sweeps for Live {
    fn sweep(
        &self,
        policy: Arc<Policy>,
        trigger: stopd_audit::SweepTrigger,
        dry_run: bool,
    ) -> BoxFuture<'static, Result<SweepSummary>> {
        let sweeper = self.sweeper.clone();
        Box::pin(async move { sweeper.sweep(policy, trigger, dry_run).await })
    }

    fn reconfigure<'a>(
        &'a mut self,
        old: &'a Config,
        new: &'a Config,
    ) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let (o, n) = (&old.daemon, &new.daemon);
            if old.aws != new.aws
                || old.accounts != new.accounts
                || o.discovery_concurrency != n.discovery_concurrency
                || o.stop_concurrency != n.stop_concurrency
                || o.stop_deadline != n.stop_deadline
            {
                // New clients and engines (what discovery remembered between sweeps is read
                // again at the next sweep).
                self.sweeper.cores =
                    Arc::new(crate::runtime::targets::build(new, self.core_cancel.clone()).await);
                tracing::info!(
                    places = self.sweeper.cores.len(),
                    "[aws], [[account]] or [daemon] client settings changed: the clients were rebuilt"
                );
            }
            self.sweeper.concurrency = n.stop_concurrency;
            if let Some(feed) = &self.events {
                feed.update(new, &self.sweeper.cores);
            }
            if let Ok(mut files) = self.calendars.lock() {
                files.clone_from(&new.calendars);
            }
            // Quiet sweeps are folded as long as they come within the new schedule's gap.
            let interval = new.daemon.interval(self.sweeper.clock.now());
            let gap = interval * 2 + stopd_audit::coverage::MARGIN;
            if let Ok(gap) = gap.to_std()
                && let Err(e) = self.sweeper.store.compact_quiet_sweeps(gap).await
            {
                tracing::error!(error = %format!("{e:#}"), "cannot apply the new schedule to sweep compaction");
            }
            if let Err(e) = crate::runtime::status::record_policy_load(
                &self.sweeper.store,
                new,
                "reload",
                self.sweeper.clock.now(),
            )
            .await
            {
                tracing::warn!("{e:#}");
            }
            // Everything else is read from the configuration at each use; the database is
            // handled (and named) by the scheduler; digests keep their directory and key.
            let mut ignored = Vec::new();
            if old.audit != new.audit {
                ignored.push("[audit]".to_owned());
            }
            ignored
        })
    }

    fn reloaded(
        &self,
        at: chrono::DateTime<chrono::Utc>,
        result: Result<Option<String>, String>,
        note: Option<String>,
    ) -> BoxFuture<'static, ()> {
        let store = self.sweeper.store.clone();
        Box::pin(async move {
            let result = result
                .as_ref()
                .map(Option::as_deref)
                .map_err(String::as_str);
            if let Err(e) = store.record_reload(at, result, note.as_deref()).await {
                tracing::error!(error = %format!("{e:#}"), "cannot record the reload in the audit log");
            }
        })
    }

    fn lead<'a>(&'a mut self, cfg: &'a Config, epoch: i64) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            // A new term: tokens that are children of the term's, which the campaign cancels
            // itself the moment the lease is lost (the last term's were, when it stepped down),
            // the engines built on them, and a store handle of this epoch: whatever of this
            // term still runs after a quick lose-and-retake writes and calls nothing under the
            // next epoch.
            self.term = match &self.leadership {
                Some(me) => me.term(epoch),
                None => CancellationToken::new(),
            };
            self.core_cancel.cancel();
            self.core_cancel = self.term.child_token();
            self.sweeper.draining = self.term.child_token();
            self.sweeper.store = self.sweeper.store.for_term(epoch);
            if self.term.is_cancelled() {
                // Lost before it was set up (the scheduler hears `Standby` next).
                tracing::warn!(
                    epoch,
                    "the term of epoch {epoch} ended before it was set up: nothing of it runs"
                );
                return false;
            }
            self.sweeper.cores =
                Arc::new(crate::runtime::targets::build(cfg, self.core_cancel.clone()).await);
            // Stops an earlier leader recorded but did not finish: resolved from the
            // executions' status before this term decides anything.
            match sweep::reconcile(
                &self.sweeper.cores,
                &self.sweeper.store,
                &self.sweeper.clock,
            )
            .await
            {
                Ok((resolved, left)) if resolved + left > 0 => {
                    tracing::info!(epoch, resolved, left, "pending stops of earlier epochs");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(epoch, error = %format!("{e:#}"), "cannot reconcile the pending stops of earlier epochs; the next start or takeover tries again");
                }
            }
            // The consumer decides with this term's engines (the last term's are cancelled).
            if let Some(feed) = &self.events {
                feed.update(cfg, &self.sweeper.cores);
            }
            self.deliver(cfg);
            self.consume();
            // Lost while it was being set up (a slow reconcile): what started stops at the
            // `Standby` that follows.
            let live = !self.term.is_cancelled();
            if !live {
                tracing::warn!(
                    epoch,
                    "the term of epoch {epoch} ended while it was being set up: this node does not lead"
                );
            }
            live
        })
    }

    fn step_down(&mut self) {
        self.sweeper.draining.cancel();
        self.core_cancel.cancel();
        self.stop_delivering();
        // Its task ends by itself once its batch is done (its calls were just cut short).
        drop(self.stop_consuming());
    }

    fn places(&self) -> Vec<(String, String)> {
        self.sweeper
            .cores
            .iter()
            .map(|c| (c.account().to_string(), c.region().to_string()))
            .collect()
    }

    fn drain(&self) {
        self.sweeper.draining.cancel();
    }

    fn cut_short(&self) {
        self.core_cancel.cancel();
    }
}

/// SIGHUP, SIGTERM and SIGINT as [`Event`]s, for the daemon and `--once` alike.
fn watch_signals(tx: mpsc::UnboundedSender<Event>) -> Result<()> {
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                _ = sigterm.recv() => Event::Shutdown("SIGTERM"),
                _ = sigint.recv() => Event::Shutdown("SIGINT"),
                _ = sighup.recv() => Event::Reload,
            };
            if tx.send(event).is_err() {
                break;
            }
        }
    });
    Ok(())
}

/// Sends [`Event::DatabaseChanged`] when another process commits to the database (SQLite's
/// `data_version`: `stopd exempt`, `stopd freeze`).
fn watch_database(store: Store, tx: mpsc::UnboundedSender<Event>) {
    tokio::spawn(async move {
        let mut last = store.data_version().await.ok();
        let mut every = tokio::time::interval(WATCH_DATABASE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Ok(now) = store.data_version().await else {
                continue;
            };
            if last.is_some_and(|l| l != now) && tx.send(Event::DatabaseChanged).is_err() {
                break;
            }
            last = Some(now);
        }
    });
}

/// The calendar files of the policy in force (`ics` rules), as the watcher reads them: set at
/// start and by each good reload.
type CalendarFiles = Arc<std::sync::Mutex<Vec<std::path::PathBuf>>>;

/// Sends [`Event::Reload`] when a calendar file of an `ics` rule changes, appears or goes away
/// (its bytes are compared every second): the policy is read again. A calendar that became
/// unreadable or invalid is never guessed from its last good windows: its rule is set aside (it
/// stops nothing) and each sweep fails naming it, until a change makes it readable again. The
/// files are those of the policy in force (`files`, updated by good reloads).
fn watch_calendars(files: CalendarFiles, tx: mpsc::UnboundedSender<Event>) {
    let current = move || files.lock().map(|f| f.clone()).unwrap_or_default();
    tokio::spawn(async move {
        let mut watched = current();
        let mut last = crate::config::calendars::fingerprint(&watched);
        let mut every = tokio::time::interval(WATCH_DATABASE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let files = current();
            let now = crate::config::calendars::fingerprint(&files);
            if files != watched {
                // A reload changed which files: what they hold now was just read.
                watched = files;
            } else if now != last {
                tracing::info!("a calendar file changed: reading the policy again");
                if tx.send(Event::Reload).is_err() {
                    break;
                }
            }
            last = now;
        }
    });
}

/// How `stopd run` ended (the command line says what it means and picks the exit code).
#[derive(Debug)]
pub enum Ran {
    /// The daemon ran until a signal stopped it, and stopped cleanly.
    Daemon,
    /// `--once`: what its one sweep did.
    Once(Box<SweepSummary>),
}

/// `stopd run [--once] [--dry-run]`, on the system's clock.
pub async fn run(cfg: Config, once: bool, dry_run: bool) -> Result<Ran> {
    run_on(cfg, once, dry_run, crate::clock::system()).await
}

/// `stopd run [--once] [--dry-run]` on `clock`: the scheduler, every sweep, and the lifecycle
/// events (start, stop) tell time by it.
pub async fn run_on(cfg: Config, once: bool, dry_run: bool, clock: SharedClock) -> Result<Ran> {
    // SQLite: one `stopd run` per file, by its lock (held until this function returns, and by
    // the kernel until the process ends). PostgreSQL: any number, one of which leads.
    let _lock = match cfg.daemon.database.path() {
        Some(path) => Some(crate::runtime::lock::acquire(path)?),
        None => None,
    };
    let store = Store::open(crate::runtime::secrets::database(&cfg)?).await?;
    let leadership = cfg.ha.as_ref().map(crate::runtime::leader::Leadership::new);
    if let Some(me) = &leadership {
        // Every call made through this store waits for nothing past this node's deadline.
        me.bind(&store);
    }
    if let Some(ha) = &cfg.ha {
        // Lifecycle events say which node they are of (a start judges only its own node's
        // last run).
        store.set_node(&ha.node);
    }
    if leadership.is_some() {
        // Nothing fenced is written before this node holds the lease.
        store.set_fence(stopd_audit::lease::Fence::Standby);
    }
    let core_cancel = CancellationToken::new();
    let cores = crate::runtime::targets::build(&cfg, core_cancel.clone()).await;
    let draining = CancellationToken::new();
    let (tx, mut events) = mpsc::unbounded_channel();
    watch_signals(tx.clone())?;

    if leadership.is_none() {
        // On PostgreSQL the leader does this when it takes the lease.
        let (resolved, left) = sweep::reconcile(&cores, &store, &clock).await?;
        if resolved + left > 0 {
            tracing::info!(resolved, left, "pending stops from an earlier run");
        }
    }
    let mut live = Live {
        sweeper: Sweeper {
            cores: Arc::new(cores),
            store: store.clone(),
            concurrency: cfg.daemon.stop_concurrency,
            draining: draining.clone(),
            clock: SharedClock::clone(&clock),
        },
        core_cancel: core_cancel.clone(),
        calendars: Arc::new(std::sync::Mutex::new(cfg.calendars.clone())),
        deliveries: None,
        events: None,
        consumer: None,
        leadership: leadership.clone(),
        term: CancellationToken::new(),
    };
    tracing::info!(
        config = %cfg.path.display(),
        database = %cfg.daemon.database,
        node = cfg.ha.as_ref().map(|h| h.node.as_str()),
        rules = cfg.policy.rules().len(),
        dry_run = dry_run || cfg.daemon.dry_run,
        once,
        "stopd starting"
    );
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }

    // A node of a cluster whose database blips now stands by and tries again; anything else
    // exits 1 (`starting`). A shutdown meanwhile ends the start: nothing was recorded to close.
    let mut starting =
        crate::runtime::starting::Starting::new(leadership.is_some() && !once, &mut events);
    macro_rules! at_start {
        ($what:expr, $call:expr) => {
            match starting.call($what, || $call).await? {
                Some(v) => v,
                None => {
                    store.close().await;
                    return Ok(Ran::Daemon);
                }
            }
        };
    }
    at_start!(
        "record the policy's load",
        crate::runtime::status::record_policy_load(&store, &cfg, "start", clock.now())
    );
    // Notifications: delivered from the audit log by their own tasks (never by a sweep).
    let notify_stop = CancellationToken::new();
    // Targets are registered before anything is recorded: what the start finds (`unwatched`),
    // and the stops of a first `run --once`, go to a target configured with it (registered
    // only when `--once` delivered, after its sweep, a new target never heard of that sweep).
    at_start!(
        "register the notification targets",
        crate::runtime::notify::register(&store, &cfg.notify, clock.as_ref())
    );
    if once {
        // On PostgreSQL `--once` sweeps only as the leader: it takes the lease, or refuses
        // while another node holds it.
        let campaign = match &leadership {
            Some(me) => {
                let epoch = crate::runtime::leader::take(&store, me, &clock).await?;
                // This term's work: a store handle of its epoch, and its calls cut and its
                // stops refused the moment the campaign loses the lease.
                live.sweeper.store = store.for_term(epoch);
                let (term, cut, drain) = (me.term(epoch), core_cancel.clone(), draining.clone());
                tokio::spawn(async move {
                    term.cancelled().await;
                    drain.cancel();
                    cut.cancel();
                });
                // Renewed from now on, so that a long reconcile or sweep keeps its lease.
                let stop = CancellationToken::new();
                let task = crate::runtime::leader::spawn(
                    store.clone(),
                    Arc::clone(me),
                    tx.clone(),
                    SharedClock::clone(&clock),
                    stop.clone(),
                );
                Some((epoch, stop, task))
            }
            None => None,
        };
        let ran = async {
            if let Some((epoch, ..)) = &campaign {
                let (resolved, left) =
                    sweep::reconcile(&live.sweeper.cores, &live.sweeper.store, &clock).await?;
                if resolved + left > 0 {
                    tracing::info!(epoch, resolved, left, "pending stops of earlier epochs");
                }
            }
            run_once(&cfg, &live, &mut events, dry_run, &store).await
        }
        .await;
        // The lease is given up on every path, so that the daemons take over at once.
        if let (Some((_, stop, task)), Some(me)) = (campaign, &leadership) {
            stop.cancel();
            let _ = task.await;
            crate::runtime::leader::release(&store, me, &clock).await;
        }
        store.close().await;
        return ran.map(|s| Ran::Once(Box::new(s)));
    }
    watch_calendars(Arc::clone(&live.calendars), tx.clone());
    if leadership.is_none() {
        live.deliver(&cfg);
    }

    // Signed digests of the chain: now, every hour, and at shutdown (the key is read first: a
    // bad one stops the start before it is recorded).
    let digester = crate::runtime::secrets::digester(&cfg.audit)?;
    // Lifecycle: the start (and an unclean stop of the run before, and the freeze windows that
    // began while no daemon ran: `unwatched`), audited before the first sweep; the clean stop
    // after the last.
    let hash = Some(cfg.policy_hash.clone());
    let policy = Arc::clone(&cfg.policy);
    let windows = move |from, to| {
        policy
            .windows(from, to)
            .into_iter()
            .map(|w| StartedWindow {
                rule: w.rule,
                start: w.window.start,
                end: w.window.end,
            })
            .collect()
    };
    // A try after the first may find the start a lost answer left on record: done then.
    let tried = std::cell::Cell::new(false);
    let started = at_start!("record the start", {
        let again = tried.replace(true);
        let version = env!("CARGO_PKG_VERSION");
        store.record_start_try(clock.now(), version, hash.as_deref(), &windows, again)
    });
    if started.already_recorded {
        tracing::info!("the start was on record already (the answer to an earlier try was lost)");
    }
    if let Some(u) = &started.unclean {
        tracing::warn!(pid = u.pid, last_seen = %u.last_seen, "the previous run did not stop cleanly (killed, or a crash); recorded as an unclean stop");
    }
    for u in &started.unwatched {
        tracing::warn!(rule = %u.rule, window_start = %u.window_start, window_end = %u.window_end,
            not_running_from = %u.gap_from, "a freeze window began while stopd was not running");
    }
    if started.unwatched_left_out > 0 {
        tracing::warn!(
            left_out = started.unwatched_left_out,
            "more freeze windows began while stopd was not running than are reported (the latest {} are)",
            stopd_audit::events::UNWATCHED_MAX
        );
    }
    // Quiet scheduled sweeps are folded into runs (the 50 MB a year of DESIGN.md), as long as
    // each comes within the gap coverage counts as watched.
    let interval = cfg.daemon.interval(clock.now());
    let gap = (interval * 2 + stopd_audit::coverage::MARGIN).to_std()?;
    at_start!("set up sweep compaction", store.compact_quiet_sweeps(gap));
    // Signals that came while the start was retried go to the scheduler.
    starting.hand_over(&tx);
    let digests_stop = CancellationToken::new();
    if let Some(d) = &digester {
        let now = SharedClock::clone(&clock);
        d.clone()
            .spawn_hourly(store.clone(), digests_stop.clone(), move || now.now());
    }
    let metrics = match cfg.metrics {
        Some(addr) => {
            let listener = crate::runtime::metrics::bind(addr).await?;
            let mut m =
                crate::runtime::metrics::Metrics::new(&cfg.policy, &cfg.daemon, Arc::clone(&clock));
            if let Some(me) = &leadership {
                m = m.with_leadership(Arc::clone(me));
            }
            if cfg.events.is_some() {
                m = m.with_events();
            }
            let m = Arc::new(m);
            m.start_places(live.sweeper.cores.iter().map(|c| (c.account(), c.region())));
            tokio::spawn(crate::runtime::metrics::serve(
                listener,
                Arc::clone(&m),
                crate::runtime::secrets::database(&cfg)?,
                notify_stop.clone(),
            ));
            Some(m)
        }
        None => None,
    };
    watch_database(store.clone(), tx.clone());
    // Event-driven enforcement: the consumer runs beside the scheduler (on PostgreSQL while
    // this node leads: `Sweeps::lead` starts it, `step_down` stops it).
    let consumer_bound = cfg.daemon.shutdown_timeout;
    if let Some((feed, consumer)) =
        crate::runtime::events::prepare(&cfg, &live.sweeper.cores, &store, &clock, dry_run).await
    {
        live.events = Some(feed);
        let consumer = crate::runtime::events::Consumer {
            metrics: metrics.clone(),
            ..consumer
        };
        live.consumer = Some((consumer, None));
        if leadership.is_none() {
            live.consume();
        }
    }
    let campaign_stop = CancellationToken::new();
    let mut scheduler = match &leadership {
        Some(me) => {
            notify(&[
                NotifyState::Ready,
                NotifyState::Status("started as a standby; reading the lease"),
            ]);
            let campaign = crate::runtime::leader::spawn(
                store.clone(),
                Arc::clone(me),
                tx,
                SharedClock::clone(&clock),
                campaign_stop.clone(),
            );
            drop(campaign);
            Scheduler::standby(Arc::new(cfg), live, SharedClock::clone(&clock), dry_run)
        }
        None => {
            notify(&[
                NotifyState::Ready,
                NotifyState::Status("started; first sweep running"),
            ]);
            Scheduler::new(Arc::new(cfg), live, SharedClock::clone(&clock), dry_run)
        }
    };
    scheduler.metrics = metrics;
    scheduler.run(events).await;
    campaign_stop.cancel();
    if let Some(task) = scheduler.sweeps.stop_consuming() {
        let _ = tokio::time::timeout(consumer_bound, task).await;
    }
    if let Err(e) = store.flush_sweep_run().await {
        tracing::error!(error = %format!("{e:#}"), "cannot record the last run of quiet sweeps");
    }
    if let Err(e) = store.record_unrecorded().await {
        tracing::error!(error = %format!("{e:#}"), "outcomes of stops made could not be recorded; the next start resolves them");
    }
    if let Some(me) = &leadership {
        crate::runtime::leader::release(&store, me, &clock).await;
    }
    if let Err(e) = store.record_stop(clock.now()).await {
        tracing::error!(error = %format!("{e:#}"), "cannot record the clean stop in the audit log");
    }
    digests_stop.cancel();
    if let Some(d) = &digester {
        d.write_logged(&store, clock.now()).await;
    }
    notify_stop.cancel();
    if let Some((stop, tracker)) = scheduler.sweeps.deliveries.take() {
        stop.cancel();
        tracker.close();
        let _ = tokio::time::timeout(crate::runtime::notify::SHUTDOWN_BOUND, tracker.wait()).await;
    }
    store.close().await;
    tracing::info!("stopd stopped");
    Ok(Ran::Daemon)
}

/// `run --once`: one sweep. A signal drains as the daemon does: no new stop, in-flight ones
/// finish (within the bound) and are recorded. Returns what the sweep did (the command line
/// exits 1 unless it was good, [`SweepSummary::ok`], and says what was not).
async fn run_once(
    cfg: &Config,
    live: &Live,
    events: &mut mpsc::UnboundedReceiver<Event>,
    dry_run: bool,
    store: &Store,
) -> Result<SweepSummary> {
    let mut sweep = tokio::spawn(live.sweep(
        Arc::clone(&cfg.policy),
        stopd_audit::SweepTrigger::Once,
        dry_run || cfg.daemon.dry_run,
    ));
    let joined = loop {
        tokio::select! {
            s = &mut sweep => break s,
            e = events.recv() => match e {
                Some(Event::Shutdown(signal)) => {
                    let bound = cfg.daemon.shutdown_timeout;
                    crate::runtime::scheduler::begin_shutdown(signal, bound);
                    live.drain();
                    break match tokio::time::timeout(bound, &mut sweep).await {
                        Ok(s) => s,
                        Err(_) => {
                            live.cut_short();
                            sweep.await
                        }
                    };
                }
                // The lease was lost mid-sweep (PostgreSQL): no call starts any more.
                Some(Event::Standby) => {
                    live.drain();
                    live.cut_short();
                }
                // A reload has nothing to do in a single sweep.
                Some(_) => {}
                None => break sweep.await,
            },
        }
    };
    let summary = joined.context("the sweep task failed")??;
    let line = summary.status_line();
    if summary.ok() || summary.interrupted() {
        tracing::info!(sweep = summary.sweep_id, "{line}");
    } else {
        tracing::error!(sweep = summary.sweep_id, "{line}");
    }
    if !cfg.notify.is_empty() {
        // Within a bound: what is left goes out with the next run or the daemon.
        crate::runtime::notify::drain(
            store,
            &cfg.notify,
            ONCE_NOTIFY_BOUND,
            SharedClock::clone(&live.sweeper.clock),
        )
        .await;
    }
    Ok(summary)
}

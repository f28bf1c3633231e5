//! The emulator as a value: the world (clock, pipelines, faults, call log) behind one lock, and
//! the [`Emulator`] handle that tests, the admin API and the HTTP server share. The protocol
//! ([`crate::api`]) sits on top of it; nothing here calls into it.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use uuid::Uuid;

use crate::clock::{Clock, Millis};
use crate::events::{EventFeed, Published};
use crate::faults::{FaultPlan, FaultRule, Faults};
use crate::fixture::{
    DEFAULT_ACCOUNT, DEFAULT_REGION, Fixture, FixtureError, FleetSpec, generate_fleet, random_uuid,
};
use crate::queue::Queues;
use crate::state::{Behaviour, Execution, Pipeline};

/// Everything the emulator knows, guarded by one lock.
#[derive(Debug)]
pub struct World {
    /// Emulated time.
    pub clock: Clock,
    /// Pipelines by name (sorted: ListPipelines pages in name order).
    pub pipelines: BTreeMap<String, Pipeline>,
    /// Deterministic randomness: ids, fault probabilities, jitter. Its own ChaCha stream, so a
    /// fleet generated from the same seed never yields the same ids.
    pub rng: ChaCha8Rng,
    /// Every execution id in use: ids are unique per emulator, as AWS's UUIDs are.
    pub ids: HashSet<Uuid>,
    /// Knobs of the lifecycle.
    pub behaviour: Behaviour,
    /// Injected faults.
    pub faults: Faults,
    /// Every API call served, in order.
    pub calls: Vec<CallRecord>,
    /// API requests being answered now (latency included).
    pub in_flight: usize,
    /// The most API requests in flight at once since the call log was last cleared.
    pub max_in_flight: usize,
    /// TCP connections that carried API calls (admin requests left out) since the call log was
    /// last cleared: how well a client reuses its connections (a new connection per call is a
    /// TLS handshake on AWS).
    pub connections: usize,
    /// Region in ARNs.
    pub region: String,
    /// Account id in ARNs.
    pub account: String,
    /// Whether API requests must carry a SigV4 `Authorization` header of the right shape.
    pub require_signature: bool,
    /// SSM Change Calendars by name: their CLOSED intervals (epoch ms, end exclusive).
    pub calendars: BTreeMap<String, Vec<(i64, i64)>>,
    /// SQS queues by name (the root account's serve every account: a central queue).
    pub queues: Queues,
    /// Where execution state changes are published (the root's setting covers every world).
    pub feed: Option<EventFeed>,
    /// What this world has published (kept while a feed is on).
    pub published: Option<Published>,
    /// The base URL the server is reached at (`QueueUrl`s start with it).
    pub endpoint: String,
}

/// The world's generator: seeded like a fleet's, but on another ChaCha stream.
fn world_rng(seed: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    rng
}

impl World {
    /// A new execution id, unique in this emulator.
    pub fn new_execution_id(&mut self) -> Uuid {
        loop {
            let id = random_uuid(&mut self.rng);
            if self.ids.insert(id) {
                return id;
            }
        }
    }

    /// The ARN of a pipeline of this account.
    pub fn arn(&self, name: &str) -> String {
        format!(
            "arn:aws:codepipeline:{}:{}:{name}",
            self.region, self.account
        )
    }
}

/// One API call the emulator served.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallRecord {
    /// Position in the log, from 0.
    pub seq: u64,
    /// Emulator time of the call, in epoch milliseconds.
    pub at_ms: Millis,
    /// Host (real) time the request arrived, in epoch milliseconds. Unlike `at_ms` it moves
    /// under a manual clock, so benchmarks can time a run from the log.
    pub wall_ms: Millis,
    /// Operation name (`X-Amz-Target` without the service prefix), or what was sent.
    pub operation: String,
    /// The pipeline the request named, if any.
    pub pipeline: Option<String>,
    /// The execution id the request named, if any.
    pub execution_id: Option<String>,
    /// HTTP status answered (0: connection dropped).
    pub status: u16,
    /// Error name answered, if any.
    pub error: Option<String>,
    /// For StopPipelineExecution: the `abandon` flag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abandon: Option<bool>,
}

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The clock.
    pub clock: Clock,
    /// Seed of ids and randomness.
    pub seed: u64,
    /// Lifecycle knobs.
    pub behaviour: Behaviour,
    /// Faults from the start.
    pub faults: FaultPlan,
    /// Whether API requests must be SigV4-signed (see [`crate::auth`]); on by default, as at AWS.
    pub require_signature: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            clock: Clock::manual(crate::clock::system_now()),
            seed: 0,
            behaviour: Behaviour::default(),
            faults: FaultPlan::default(),
            require_signature: true,
        }
    }
}

/// A handle on one emulated CodePipeline account; cheap to clone, shared by every connection.
///
/// The root handle (the one [`Emulator::new`] makes) is the account of the ambient credentials.
/// Other accounts exist once [`Accounts`] has roles: STS AssumeRole (see [`crate::sts`]) issues
/// session credentials for a role, and a request signed with them is served by the world of the
/// role's account and the request's region ([`Emulator::world_of`]).
#[derive(Debug, Clone)]
pub struct Emulator {
    /// The state every handle sees.
    world: Arc<Mutex<World>>,
    /// Roles, issued sessions and the other accounts' worlds (shared by the root's clones;
    /// a child world's own registry stays empty).
    accounts: Arc<Mutex<Accounts>>,
}

/// A role STS lets the ambient identity assume.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Role {
    /// The 12-digit account the role belongs to.
    pub account: String,
    /// The `sts:ExternalId` its trust policy requires, if any.
    pub external_id: Option<String>,
    /// Whether AssumeRole is refused (AccessDenied), as when the trust policy does not name
    /// the caller.
    pub denied: bool,
}

/// Credentials STS issued.
#[derive(Debug, Clone)]
pub struct Session {
    /// The account whose role was assumed.
    pub account: String,
    /// Expiry, in real (host) epoch milliseconds: the SDK renews by the host's clock.
    pub expires_wall_ms: Millis,
}

/// Other accounts: roles by ARN, sessions by access key id, and one world per (account, region).
#[derive(Debug, Default)]
pub struct Accounts {
    /// Roles by ARN.
    pub roles: BTreeMap<String, Role>,
    /// Issued sessions by access key id.
    pub sessions: std::collections::HashMap<String, Session>,
    /// Worlds by (account id, region).
    pub worlds: BTreeMap<(String, String), Emulator>,
    /// How long issued credentials last (default one hour, as AssumeRole's default).
    pub session_ttl: Option<Duration>,
    /// Fleet of a world made on first use: pipelines per (account, region), history, seed.
    pub fleet: Option<FleetSpec>,
    /// AssumeRole requests answered.
    pub assume_role_calls: usize,
}

/// Host time in epoch milliseconds.
pub fn wall_ms() -> Millis {
    crate::clock::system_now()
}

/// Read-only view of one execution, for tests.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionView {
    /// Execution id.
    pub id: String,
    /// Status name as on the wire.
    pub status: &'static str,
    /// STANDARD or ROLLBACK.
    pub execution_type: &'static str,
    /// Start, epoch ms.
    pub start_ms: Millis,
    /// End, epoch ms, once final.
    pub end_ms: Option<Millis>,
    /// Reason given with the stop.
    pub stop_reason: Option<String>,
    /// Whether an abandon was accepted.
    pub abandoned: bool,
}

impl From<&Execution> for ExecutionView {
    fn from(e: &Execution) -> Self {
        ExecutionView {
            id: e.id.to_string(),
            status: e.status.as_str(),
            execution_type: e.kind.as_str(),
            start_ms: e.created,
            end_ms: e.ended,
            stop_reason: e.stop.as_ref().and_then(|s| s.reason.clone()),
            abandoned: e.stop.as_ref().is_some_and(|s| s.abandon_at.is_some()),
        }
    }
}

impl Emulator {
    /// An empty account.
    pub fn new(config: EmulatorConfig) -> Emulator {
        let mut faults = Faults::default();
        faults.set_plan(config.faults);
        Emulator {
            accounts: Arc::new(Mutex::new(Accounts::default())),
            world: Arc::new(Mutex::new(World {
                clock: config.clock,
                pipelines: BTreeMap::new(),
                rng: world_rng(config.seed),
                ids: HashSet::new(),
                behaviour: config.behaviour,
                faults,
                calls: Vec::new(),
                in_flight: 0,
                max_in_flight: 0,
                connections: 0,
                region: DEFAULT_REGION.to_string(),
                account: DEFAULT_ACCOUNT.to_string(),
                require_signature: config.require_signature,
                calendars: BTreeMap::new(),
                queues: Queues::new(),
                feed: None,
                published: None,
                endpoint: "http://127.0.0.1".to_string(),
            })),
        }
    }

    /// Locks the world (a panicked holder cannot leave it half-changed in a way that matters to
    /// a test server, so poisoning is ignored).
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces all pipelines with those of the fixture (and the calendars, if it has any). An
    /// execution id given twice is refused.
    pub fn seed(&self, fixture: &Fixture) -> Result<usize, FixtureError> {
        let mut w = self.lock();
        let now = w.clock.now();
        let mut pipelines = fixture.build(now, &mut w.rng)?;
        let calendars = fixture.build_calendars(now)?;
        let mut ids = HashSet::new();
        for p in &pipelines {
            for e in &p.executions {
                if !ids.insert(e.id) {
                    return Err(FixtureError::Invalid {
                        pipeline: p.name.clone(),
                        message: format!("execution id {} is used twice", e.id),
                    });
                }
            }
        }
        let n = pipelines.len();
        w.ids = ids;
        w.pipelines = pipelines.drain(..).map(|p| (p.name.clone(), p)).collect();
        if let Some(calendars) = calendars {
            w.calendars = calendars;
        }
        Ok(n)
    }

    /// Replaces all pipelines with a generated fleet.
    pub fn seed_fleet(&self, spec: FleetSpec) -> usize {
        let mut w = self.lock();
        let now = w.clock.now();
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        let mut fleet = generate_fleet(spec, now, &mut rng);
        let mut ids = HashSet::new();
        for p in &mut fleet {
            for e in &mut p.executions {
                while !ids.insert(e.id) {
                    e.id = random_uuid(&mut w.rng);
                }
            }
        }
        w.ids = ids;
        w.pipelines = fleet.into_iter().map(|p| (p.name.clone(), p)).collect();
        w.pipelines.len()
    }

    /// Deletes a pipeline (as DeletePipeline would); returns whether it existed.
    pub fn delete_pipeline(&self, name: &str) -> bool {
        self.lock().pipelines.remove(name).is_some()
    }

    /// Empties pipelines and the call log; the clock keeps its time, and the fault plan stays
    /// unless `clear_faults` (a test harness sets its faults once, then resets between runs).
    pub fn reset(&self, clear_faults: bool) {
        let mut w = self.lock();
        w.pipelines.clear();
        w.ids.clear();
        if clear_faults {
            w.faults.set_plan(FaultPlan::default());
        }
        w.calls.clear();
        w.max_in_flight = w.in_flight;
        w.connections = 0;
    }

    /// Counts a TCP connection that carries API calls.
    pub fn count_connection(&self) {
        self.lock().connections += 1;
    }

    /// TCP connections that carried API calls since the call log was last cleared.
    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    /// Counts an API request as in flight until the returned guard is dropped.
    pub fn begin_request(&self) -> InFlight {
        let mut w = self.lock();
        w.in_flight += 1;
        w.max_in_flight = w.max_in_flight.max(w.in_flight);
        InFlight(self.clone())
    }

    /// The most API requests in flight at once since the call log was last cleared: what a
    /// client's concurrency bound comes to, seen from the server.
    pub fn max_in_flight(&self) -> usize {
        self.lock().max_in_flight
    }

    /// Emulator time now.
    pub fn now(&self) -> Millis {
        self.lock().clock.now()
    }

    /// Moves emulator time forward (every account's world shares the root's clock).
    pub fn advance(&self, by: Duration) {
        self.lock().clock.advance(by);
        for (_, w) in self.children() {
            w.lock().clock.advance(by);
        }
    }

    /// Sets emulator time (never backwards); returns the time now in force.
    pub fn set_time(&self, to: Millis) -> Millis {
        for (_, w) in self.children() {
            w.lock().clock.set(to);
        }
        self.lock().clock.set(to)
    }

    /// Whether two handles share one world.
    pub fn same_as(&self, other: &Emulator) -> bool {
        Arc::ptr_eq(&self.world, &other.world)
    }

    /// Locks the registry of other accounts.
    pub fn accounts(&self) -> MutexGuard<'_, Accounts> {
        self.accounts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The worlds of other accounts, by (account id, region).
    pub fn children(&self) -> Vec<((String, String), Emulator)> {
        self.accounts()
            .worlds
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The world of `account` in `region`, made on first use: same clock, lifecycle, fault plan
    /// (its own counters and rate-limit buckets: CodePipeline throttles per account and region)
    /// and signature rule as the root, and the registry's fleet if one was set.
    pub fn world_of(&self, account: &str, region: &str) -> Emulator {
        let key = (account.to_string(), region.to_string());
        let mut reg = self.accounts();
        if let Some(w) = reg.worlds.get(&key) {
            return w.clone();
        }
        let (clock, behaviour, plan, require_signature) = {
            let w = self.lock();
            (
                w.clock.clone(),
                w.behaviour,
                w.faults.plan.clone(),
                w.require_signature,
            )
        };
        // Distinct ids per world: the seed mixes in the world's position.
        let n = reg.worlds.len() as u64 + 1;
        let child = Emulator::new(EmulatorConfig {
            clock,
            seed: n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            behaviour,
            faults: plan,
            require_signature,
        });
        {
            let mut w = child.lock();
            w.account = account.to_string();
            w.region = region.to_string();
        }
        if let Some(spec) = reg.fleet {
            child.seed_fleet(FleetSpec {
                seed: spec.seed.wrapping_add(n),
                ..spec
            });
        }
        reg.worlds.insert(key, child.clone());
        child
    }

    /// Defines `count` accounts (ids 100000000001, 100000000002, ...), each with the role
    /// `arn:aws:iam::ID:role/stopd` and a world in each region seeded with `fleet`; returns the
    /// role ARNs. Worlds made later (another region) get the same fleet.
    pub fn add_accounts(
        &self,
        count: usize,
        regions: &[String],
        fleet: Option<FleetSpec>,
        external_id: Option<&str>,
        session_ttl: Option<Duration>,
    ) -> Vec<String> {
        let mut arns = Vec::new();
        {
            let mut reg = self.accounts();
            reg.fleet = fleet;
            reg.session_ttl = session_ttl;
            for i in 0..count {
                let account = format!("{:012}", 100_000_000_001_u64 + i as u64);
                let arn = format!("arn:aws:iam::{account}:role/stopd");
                reg.roles.insert(
                    arn.clone(),
                    Role {
                        account,
                        external_id: external_id.map(str::to_string),
                        denied: false,
                    },
                );
                arns.push(arn);
            }
        }
        for arn in &arns {
            let account = self.accounts().roles[arn].account.clone();
            for r in regions {
                self.world_of(&account, r);
            }
        }
        arns
    }

    /// Refuses (or allows again) AssumeRole of a role; false if there is no such role.
    pub fn set_role_denied(&self, role_arn: &str, denied: bool) -> bool {
        match self.accounts().roles.get_mut(role_arn) {
            Some(r) => {
                r.denied = denied;
                true
            }
            None => false,
        }
    }

    /// Ends every issued session now: the next call made with one is answered
    /// ExpiredTokenException.
    pub fn expire_sessions(&self) {
        for s in self.accounts().sessions.values_mut() {
            s.expires_wall_ms = 0;
        }
    }

    /// Replaces the fault plan.
    pub fn set_faults(&self, plan: FaultPlan) {
        self.lock().faults.set_plan(plan);
    }

    /// Adds one fault rule to the plan.
    pub fn add_fault(&self, rule: FaultRule) {
        self.lock().faults.plan.rules.push(rule);
    }

    /// The fault plan with its counters.
    pub fn faults(&self) -> FaultPlan {
        self.lock().faults.plan.clone()
    }

    /// Every call served so far.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.lock().calls.clone()
    }

    /// The calls served from sequence number `seq` on (only those are copied: a harness that
    /// polls for new calls does not copy the whole log each time).
    pub fn calls_since(&self, seq: u64) -> Vec<CallRecord> {
        let w = self.lock();
        let from = w.calls.partition_point(|c| c.seq < seq);
        w.calls[from..].to_vec()
    }

    /// Empties the call log.
    pub fn clear_calls(&self) {
        let mut w = self.lock();
        w.calls.clear();
        w.max_in_flight = w.in_flight;
        w.connections = 0;
    }

    /// Calls served, counted by operation.
    pub fn call_counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for c in &self.lock().calls {
            *out.entry(c.operation.clone()).or_default() += 1;
        }
        out
    }

    /// One execution, resolved to now.
    pub fn execution(&self, pipeline: &str, id: &str) -> Option<ExecutionView> {
        let mut w = self.lock();
        let (now, behaviour) = (w.clock.now(), w.behaviour);
        let p = w.pipelines.get_mut(pipeline)?;
        p.resolve(now, behaviour);
        p.executions
            .iter()
            .find(|e| e.id.to_string() == id)
            .map(ExecutionView::from)
    }

    /// Every execution of a pipeline, oldest first, resolved to now.
    pub fn executions(&self, pipeline: &str) -> Vec<ExecutionView> {
        let mut w = self.lock();
        let (now, behaviour) = (w.clock.now(), w.behaviour);
        match w.pipelines.get_mut(pipeline) {
            Some(p) => {
                p.resolve(now, behaviour);
                p.executions.iter().map(ExecutionView::from).collect()
            }
            None => Vec::new(),
        }
    }

    /// Every (pipeline, execution) that is InProgress or Stopping now.
    pub fn active_executions(&self) -> Vec<(String, ExecutionView)> {
        let mut w = self.lock();
        let (now, behaviour) = (w.clock.now(), w.behaviour);
        let mut out = Vec::new();
        for p in w.pipelines.values_mut() {
            p.resolve(now, behaviour);
            for e in p.executions.iter().filter(|e| !e.status.is_final()) {
                out.push((p.name.clone(), ExecutionView::from(e)));
            }
        }
        out
    }
}

/// An API request being answered (see [`Emulator::begin_request`]).
#[derive(Debug)]
pub struct InFlight(Emulator);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut w = self.0.lock();
        w.in_flight = w.in_flight.saturating_sub(1);
    }
}

/// The event feed and the queues (see [`crate::events`] and [`crate::queue`]).
impl Emulator {
    /// Creates an empty queue (of the root account) if there is none of that name.
    pub fn create_queue(&self, name: &str) {
        self.lock().queues.entry(name.to_string()).or_default();
    }

    /// Publishes every world's execution state changes from now on to `feed.queue` (created if
    /// missing); what already ran is history, not news.
    pub fn enable_events(&self, feed: EventFeed) {
        self.create_queue(&feed.queue);
        for (_, world) in std::iter::once((Default::default(), self.clone())).chain(self.children())
        {
            let mut w = world.lock();
            let (now, behaviour) = (w.clock.now(), w.behaviour);
            w.published = Some(Published::snapshot(&mut w.pipelines, now, behaviour));
        }
        self.lock().feed = Some(feed);
    }

    /// Stops publishing (the queue and its messages stay).
    pub fn disable_events(&self) {
        self.lock().feed = None;
    }

    /// The feed's settings and counters, if it is on.
    pub fn feed(&self) -> Option<EventFeed> {
        self.lock().feed.clone()
    }

    /// The approximate counts of a queue now.
    pub fn queue_depth(&self, name: &str) -> Option<crate::queue::Depth> {
        let w = self.lock();
        let now = w.clock.now();
        w.queues.get(name).map(|q| q.depth(now))
    }

    /// Finds what changed in every world since the last look and puts each change on the
    /// feed's queue as EventBridge would (with the feed's faults); returns how many messages
    /// were put. Called whenever the queue is read, so nothing is later than a read that could
    /// have seen it.
    pub fn publish_events(&self) -> usize {
        if self.lock().feed.is_none() {
            return 0;
        }
        let mut changes = Vec::new();
        for (_, world) in std::iter::once((Default::default(), self.clone())).chain(self.children())
        {
            let mut w = world.lock();
            let (now, behaviour) = (w.clock.now(), w.behaviour);
            let World {
                pipelines,
                published,
                account,
                region,
                ..
            } = &mut *w;
            let published =
                published.get_or_insert_with(|| Published::snapshot(pipelines, now, behaviour));
            let found = crate::events::observe(pipelines, published, now, behaviour);
            changes.extend(
                found
                    .into_iter()
                    .map(|c| (c, account.clone(), region.clone())),
            );
        }
        if changes.is_empty() {
            return 0;
        }
        let mut w = self.lock();
        let World {
            feed, queues, rng, ..
        } = &mut *w;
        let Some(feed) = feed.as_mut() else {
            return 0;
        };
        let mut put = 0;
        for (change, account, region) in changes {
            feed.stats.changes += 1;
            if rand::Rng::random::<f64>(rng) < feed.loss {
                feed.stats.lost += 1;
                continue;
            }
            let Some(queue) = queues.get_mut(&feed.queue) else {
                feed.stats.lost += 1;
                continue;
            };
            // EventBridge sends a duplicate with the same event id.
            let event_id = random_uuid(rng);
            let body = crate::events::envelope(&change, event_id, &account, &region);
            let copies = if rand::Rng::random::<f64>(rng) < feed.duplicate {
                feed.stats.duplicated += 1;
                2
            } else {
                1
            };
            for _ in 0..copies {
                let jitter = feed.jitter.mul_f64(rand::Rng::random::<f64>(rng));
                let late = (feed.delay + jitter).as_millis() as Millis;
                let message_id = random_uuid(rng).to_string();
                queue.send(message_id, body.clone(), change.at, change.at + late);
                feed.stats.delivered += 1;
                put += 1;
            }
        }
        put
    }
}

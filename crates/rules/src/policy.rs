//! Compiling a [`PolicySpec`] into a [`Policy`]: every check serde cannot make, each error
//! naming the table, index and key it is about.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;

use crate::cron::CronExpr;
use crate::select::{GlobError, Place, Selector};
use crate::span::Span;
use crate::spec::{ExemptSpec, FreezeSpec, Mode, PolicySpec, RuleRef, Table, TimeoutSpec};
use crate::template::Template;
use crate::window::{Schedule, Window};
use crate::zone::resolve_local;

mod allow;
mod error;
mod sources;
mod unreadable;

pub use allow::DEFAULT_ALLOW_REASON;
use allow::compile_allow;
pub use error::{Location, PolicyError, PolicyErrorKind};
pub use unreadable::Unreadable;

/// The reason template used when neither the rule nor `[defaults]` sets one.
pub const DEFAULT_REASON: &str = "stopd: {rule}";

/// What kind of rule decided a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// A `[[freeze]]`.
    Freeze,
    /// A `[[timeout]]`.
    Timeout,
    /// A stop asked for by hand (`stopd stop`).
    Manual,
}

impl RuleKind {
    /// The audit-log and template name.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Freeze => "freeze",
            RuleKind::Timeout => "timeout",
            RuleKind::Manual => "manual",
        }
    }
}

/// What a freeze or timeout reacts to.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// Freeze windows, and the grace given to executions already running when one opens.
    Freeze {
        /// When the freeze is in force.
        schedule: Schedule,
        /// Grace for executions that started before the window.
        grace: Duration,
    },
    /// Longest allowed run.
    Timeout {
        /// `now - start > max` stops.
        max: Duration,
    },
}

/// A compiled freeze or timeout.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// Where it is in the policy file.
    pub at: RuleRef,
    /// Freeze or timeout.
    pub kind: RuleKind,
    /// Stop mode.
    pub mode: Mode,
    /// Reason template.
    pub reason: Template,
    /// Which pipelines.
    pub selector: Selector,
    /// Which accounts and regions.
    pub place: Place,
    /// Whether ROLLBACK executions are stopped too.
    pub rollbacks: bool,
    /// Still Stopping after this long -> abandon (mode finish only).
    pub escalate_after: Option<Duration>,
    /// The rule's zone (for display; schedules carry their own).
    pub timezone: Tz,
    /// Windows or timeout.
    pub trigger: Trigger,
    /// Freezes with `gate = true`: which inbound transitions to hold while a window is open.
    pub gate: Option<Gate>,
}

/// The transitions a gating freeze holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// `gate_stages`: these stages' inbound transitions; `None`: every stage after the first.
    pub stages: Option<Vec<String>>,
}

impl Gate {
    /// The stages of a pipeline whose inbound transition this gate holds, given the
    /// pipeline's stages in order (a named stage the pipeline does not have is skipped).
    pub fn stages_of<'a>(&self, pipeline_stages: &'a [String]) -> Vec<&'a str> {
        match &self.stages {
            None => pipeline_stages.iter().skip(1).map(String::as_str).collect(),
            Some(names) => pipeline_stages
                .iter()
                .filter(|s| names.contains(s))
                .map(String::as_str)
                .collect(),
        }
    }
}

/// Where an exemption comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExemptionSource {
    /// An `[[exempt]]` table.
    Config,
    /// A break-glass exemption from the database (`stopd exempt add`).
    BreakGlass,
}

/// An exemption: never stop what it selects, until it expires.
#[derive(Debug, Clone)]
pub struct Exemption {
    /// Name (for break-glass: the database id).
    pub name: String,
    /// Which pipelines.
    pub selector: Selector,
    /// Which accounts and regions.
    pub place: Place,
    /// Exclusive expiry.
    pub until: Option<DateTime<Utc>>,
    /// Why, for display.
    pub reason: Option<String>,
    /// Config or break-glass.
    pub source: ExemptionSource,
    /// Only this rule (by name); `None`: every rule. Another rule that applies still stops.
    pub rule: Option<String>,
}

impl Exemption {
    /// A break-glass exemption for pipelines matching `glob` until `until`.
    pub fn break_glass(
        name: impl Into<String>,
        glob: &str,
        until: DateTime<Utc>,
        reason: impl Into<String>,
    ) -> Result<Exemption, GlobError> {
        Ok(Exemption {
            name: name.into(),
            selector: Selector::new(&[glob.to_string()], &[], BTreeMap::new())?,
            place: Place::default(),
            until: Some(until),
            reason: Some(reason.into()),
            source: ExemptionSource::BreakGlass,
            rule: None,
        })
    }

    /// The same exemption, limited to the rule named `rule` (`None`: every rule).
    pub fn only_rule(mut self, rule: Option<String>) -> Exemption {
        self.rule = rule;
        self
    }

    /// Whether it is in force at `t`.
    pub fn active_at(&self, t: DateTime<Utc>) -> bool {
        self.until.is_none_or(|u| t < u)
    }
}

/// A validated policy: rules in precedence order, and exemptions.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Freezes and timeouts, in file order.
    pub(crate) rules: Vec<Rule>,
    /// `[[exempt]]` entries.
    pub(crate) exemptions: Vec<Exemption>,
    /// `[defaults] timezone`.
    pub(crate) default_tz: Tz,
    /// `[defaults] mode`.
    pub(crate) default_mode: Mode,
    /// Rules left out because their calendar cannot be read (see
    /// [`Policy::compile_setting_aside_calendars`]); empty for [`Policy::compile`].
    pub(crate) unreadable: Vec<Unreadable>,
}

/// Parses an IANA zone name.
pub fn parse_zone(name: &str) -> Option<Tz> {
    name.parse::<Tz>().ok()
}

/// The IANA zone meant by a name that is not one: the same name in another case
/// (`europe/berlin`), or a city alone (`Berlin`, `new york`: `Europe/Berlin`, `America/New_York`).
pub fn suggest_zone(name: &str) -> Option<Tz> {
    let want = name.trim().replace(' ', "_").to_ascii_lowercase();
    if want.is_empty() {
        return None;
    }
    let zones = chrono_tz::TZ_VARIANTS.iter();
    zones
        .clone()
        .find(|z| z.name().to_ascii_lowercase() == want)
        .or_else(|| {
            zones.clone().find(|z| {
                z.name()
                    .rsplit('/')
                    .next()
                    .is_some_and(|city| city.to_ascii_lowercase() == want)
            })
        })
        .copied()
}

/// Parses RFC 3339 with an offset, or a local date-time (or date) in `tz`.
pub fn parse_time(text: &str, tz: Tz) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let local = [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })?;
    Some(resolve_local(local, tz))
}

/// Collects errors for one entry.
pub(crate) struct Ctx<'a> {
    pub(crate) rule: RuleRef,
    pub(crate) errors: &'a mut Vec<PolicyError>,
}

impl Ctx<'_> {
    fn err(&mut self, key: Option<&'static str>, kind: PolicyErrorKind) {
        self.errors.push(PolicyError {
            at: Location {
                rule: self.rule,
                key,
            },
            kind,
        });
    }

    fn zone(&mut self, name: Option<&str>, default: Tz) -> Tz {
        match name {
            None => default,
            Some(n) => parse_zone(n).unwrap_or_else(|| {
                self.err(
                    Some("timezone"),
                    PolicyErrorKind::UnknownZone(n.to_string()),
                );
                default
            }),
        }
    }

    fn template(&mut self, text: &str) -> Template {
        Template::parse(text).unwrap_or_else(|e| {
            self.err(Some("reason"), e.into());
            Template::parse(DEFAULT_REASON).expect("default template parses")
        })
    }

    fn selector(
        &mut self,
        pipelines: Option<&Vec<String>>,
        exclude: Option<&Vec<String>>,
        tags: Option<&BTreeMap<String, String>>,
    ) -> Selector {
        let all = vec!["*".to_string()];
        let include = pipelines.unwrap_or(&all);
        if include.is_empty() {
            self.err(Some("pipelines"), PolicyErrorKind::EmptyPipelines);
        }
        let exclude = exclude.cloned().unwrap_or_default();
        let tags = tags.cloned().unwrap_or_default();
        Selector::new(include, &exclude, tags.clone()).unwrap_or_else(|e| {
            let key = if Selector::new(include, &[], BTreeMap::new()).is_err() {
                "pipelines"
            } else {
                "exclude"
            };
            self.err(Some(key), e.into());
            Selector::new(&[], &[], tags).expect("empty selector builds")
        })
    }

    fn place(&mut self, accounts: Option<&Vec<String>>, regions: Option<&Vec<String>>) -> Place {
        for (key, list) in [("accounts", accounts), ("regions", regions)] {
            if list.is_some_and(Vec::is_empty) {
                self.err(Some(key), PolicyErrorKind::EmptyPlaces);
            }
        }
        let accounts = accounts.map(Vec::as_slice);
        let regions = regions.map(Vec::as_slice);
        Place::new(accounts, regions).unwrap_or_else(|e| {
            let key = if Place::new(accounts, None).is_err() {
                "accounts"
            } else {
                "regions"
            };
            self.err(Some(key), e.into());
            Place::default()
        })
    }

    fn time(&mut self, key: &'static str, text: &str, tz: Tz) -> Option<DateTime<Utc>> {
        let t = parse_time(text, tz);
        if t.is_none() {
            self.err(Some(key), PolicyErrorKind::BadTime(text.to_string()));
        }
        t
    }
}

impl Policy {
    /// Validates a policy. Returns every problem found, not only the first.
    pub fn compile(spec: &PolicySpec) -> Result<Policy, Vec<PolicyError>> {
        let (policy, errors) = Policy::compile_all(spec);
        errors.is_empty().then_some(policy).ok_or(errors)
    }

    /// Every rule that compiles, and every problem found (a rule with a problem is left out).
    fn compile_all(spec: &PolicySpec) -> (Policy, Vec<PolicyError>) {
        let mut errors = Vec::new();
        let defaults_ref = RuleRef {
            table: Table::Defaults,
            index: 0,
        };
        let mut dctx = Ctx {
            rule: defaults_ref,
            errors: &mut errors,
        };
        let default_tz = dctx.zone(spec.defaults.timezone.as_deref(), chrono_tz::UTC);
        let default_mode = spec.defaults.mode.unwrap_or(Mode::Finish);
        let default_reason = spec.defaults.reason.as_deref().unwrap_or(DEFAULT_REASON);
        dctx.template(default_reason);

        let mut names: HashMap<String, RuleRef> = HashMap::new();
        let mut check_name = |name: &str, at: RuleRef, errors: &mut Vec<PolicyError>| {
            let loc = Location {
                rule: at,
                key: Some("name"),
            };
            if name.trim().is_empty() {
                errors.push(PolicyError {
                    at: loc,
                    kind: PolicyErrorKind::EmptyName,
                });
            } else if let Some(first) = names.get(name) {
                errors.push(PolicyError {
                    at: loc,
                    kind: PolicyErrorKind::DuplicateName {
                        name: name.to_string(),
                        first: Location {
                            rule: *first,
                            key: None,
                        }
                        .to_string(),
                    },
                });
            } else {
                names.insert(name.to_string(), at);
            }
        };

        let mut rules = Vec::new();
        for (index, f) in spec.freeze.iter().enumerate() {
            let at = RuleRef {
                table: Table::Freeze,
                index,
            };
            check_name(&f.name, at, &mut errors);
            let mut ctx = Ctx {
                rule: at,
                errors: &mut errors,
            };
            if let Some(rule) =
                compile_freeze(f, &mut ctx, default_tz, default_mode, default_reason)
            {
                rules.push(rule);
            }
        }
        let allow_reason = spec
            .defaults
            .reason
            .as_deref()
            .unwrap_or(DEFAULT_ALLOW_REASON);
        for (index, a) in spec.allow.iter().enumerate() {
            let at = RuleRef {
                table: Table::Allow,
                index,
            };
            check_name(&a.name, at, &mut errors);
            let mut ctx = Ctx {
                rule: at,
                errors: &mut errors,
            };
            if let Some(rule) = compile_allow(a, &mut ctx, default_tz, default_mode, allow_reason) {
                rules.push(rule);
            }
        }
        for (index, t) in spec.timeout.iter().enumerate() {
            let at = RuleRef {
                table: Table::Timeout,
                index,
            };
            check_name(&t.name, at, &mut errors);
            let mut ctx = Ctx {
                rule: at,
                errors: &mut errors,
            };
            if let Some(rule) =
                compile_timeout(t, &mut ctx, default_tz, default_mode, default_reason)
            {
                rules.push(rule);
            }
        }
        let mut exemptions = Vec::new();
        for (index, e) in spec.exempt.iter().enumerate() {
            let at = RuleRef {
                table: Table::Exempt,
                index,
            };
            check_name(&e.name, at, &mut errors);
            let mut ctx = Ctx {
                rule: at,
                errors: &mut errors,
            };
            exemptions.push(compile_exempt(e, &mut ctx, default_tz));
        }
        // File order: the loader's order if given, else freezes, allow rules, then timeouts.
        if !spec.file_order.is_empty() {
            let pos = |r: &Rule| {
                spec.file_order
                    .iter()
                    .position(|x| *x == r.at)
                    .unwrap_or(usize::MAX)
            };
            rules.sort_by_key(|r| (pos(r), r.at));
        }
        let policy = Policy {
            rules,
            exemptions,
            default_tz,
            default_mode,
            unreadable: Vec::new(),
        };
        (policy, errors)
    }

    /// This policy with ad-hoc freezes after the file's rules (`stopd freeze add`: they live
    /// in the audit database, not in the file). Each is compiled as a `[[freeze]]` with the
    /// file's defaults; an error is located as `adhoc[i]`.
    pub fn with_adhoc(&self, freezes: &[FreezeSpec]) -> Result<Policy, Vec<PolicyError>> {
        if freezes.is_empty() {
            return Ok(self.clone());
        }
        let mut errors = Vec::new();
        let mut rules = self.rules.clone();
        for (index, f) in freezes.iter().enumerate() {
            let mut ctx = Ctx {
                rule: RuleRef {
                    table: Table::Adhoc,
                    index,
                },
                errors: &mut errors,
            };
            if let Some(rule) = compile_freeze(
                f,
                &mut ctx,
                self.default_tz,
                self.default_mode,
                DEFAULT_REASON,
            ) {
                rules.push(rule);
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Policy {
            rules,
            exemptions: self.exemptions.clone(),
            default_tz: self.default_tz,
            default_mode: self.default_mode,
            unreadable: self.unreadable.clone(),
        })
    }

    /// `[defaults] mode`.
    pub fn default_mode(&self) -> Mode {
        self.default_mode
    }

    /// Freezes and timeouts in precedence (file) order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule of that name.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// The `[[exempt]]` entries.
    pub fn exemptions(&self) -> &[Exemption] {
        &self.exemptions
    }

    /// `[defaults] timezone`.
    pub fn default_timezone(&self) -> Tz {
        self.default_tz
    }

    /// Whether any rule selects by tag (so discovery must fetch tags).
    pub fn uses_tags(&self) -> bool {
        self.rules.iter().any(|r| r.selector.uses_tags())
    }

    /// The rules and exemptions that apply in this account (by name) and region, in the same
    /// order: what a sweep of that (account, region) decides by (a Change Calendar seen from
    /// that place: [`ChangeCalendar::at_place`](crate::ChangeCalendar::at_place)).
    pub fn for_place(&self, account: &str, region: &str) -> Policy {
        Policy {
            rules: self
                .rules
                .iter()
                .filter(|r| r.place.matches(account, region))
                .map(|r| r.at_place(account, region))
                .collect(),
            exemptions: self
                .exemptions
                .iter()
                .filter(|e| e.place.matches(account, region))
                .cloned()
                .collect(),
            default_tz: self.default_tz,
            default_mode: self.default_mode,
            unreadable: self.unreadable.clone(),
        }
    }

    /// Whether any rule or exemption is limited to some accounts or regions.
    pub fn selects_places(&self) -> bool {
        self.rules.iter().any(|r| !r.place.is_everywhere())
            || self.exemptions.iter().any(|e| !e.place.is_everywhere())
    }

    /// How many freeze rules have a window open at `at` (each rule once, however many of its
    /// windows overlap).
    pub fn open_freezes(&self, at: DateTime<Utc>) -> usize {
        let mut open: Vec<String> = self
            .windows(at, at + Duration::seconds(1))
            .into_iter()
            .filter(|w| w.window.start <= at && at < w.window.end)
            .map(|w| w.rule)
            .collect();
        open.sort();
        open.dedup();
        open.len()
    }

    /// Whether some rule can apply to a pipeline of this name (tags aside): discovery skips
    /// the others before making any per-pipeline call.
    pub fn may_apply_to(&self, pipeline: &str) -> bool {
        self.rules.iter().any(|r| r.selector.name_matches(pipeline))
    }
}

pub(crate) fn compile_freeze(
    f: &FreezeSpec,
    ctx: &mut Ctx<'_>,
    default_tz: Tz,
    default_mode: Mode,
    default_reason: &str,
) -> Option<Rule> {
    let tz = ctx.zone(f.timezone.as_deref(), default_tz);
    if f.end_cron.is_some() && f.cron.is_none() {
        let why = "end_cron needs cron: a one-off window ends at `end`";
        ctx.err(Some("end_cron"), PolicyErrorKind::FreezeShape(why));
        return None;
    }
    if !sources::exclusive(f, ctx) {
        return None;
    }
    let schedule = match (&f.cron, f.duration, &f.start, &f.end) {
        _ if f.ics.is_some() => sources::ics_schedule(f, ctx, tz)?,
        _ if f.change_calendar.is_some() => sources::change_calendar(f),
        (Some(cron), duration, None, None) => {
            let cron = CronExpr::parse(cron).map_err(|e| ctx.err(Some("cron"), e.into()));
            let end = f.end_cron.as_deref().map(CronExpr::parse);
            let end = end.map(|e| e.map_err(|e| ctx.err(Some("end_cron"), e.into())));
            let mut shape = |key, why| -> Option<Schedule> {
                ctx.err(Some(key), PolicyErrorKind::FreezeShape(why));
                None
            };
            match (duration, end) {
                (Some(d), None) => Schedule::recurring(cron.ok()?, d.delta(), tz),
                (None, Some(end)) => Schedule::recurring_until(cron.ok()?, end.ok()?, tz),
                (None, None) => shape("duration", "cron needs duration or end_cron")?,
                (Some(_), Some(_)) => shape("end_cron", "use duration or end_cron, not both")?,
            }
        }
        (None, None, Some(start), Some(end)) => {
            let s = ctx.time("start", start, tz);
            let e = ctx.time("end", end, tz);
            let (s, e) = (s?, e?);
            if e <= s {
                ctx.err(
                    Some("end"),
                    PolicyErrorKind::EndNotAfterStart {
                        start: s.to_rfc3339(),
                        end: e.to_rfc3339(),
                    },
                );
                return None;
            }
            Schedule::OneOff(Window { start: s, end: e })
        }
        (None, Some(_), None, None) => {
            ctx.err(
                Some("cron"),
                PolicyErrorKind::FreezeShape("duration needs cron"),
            );
            return None;
        }
        (None, _, Some(_), None) => {
            ctx.err(Some("end"), PolicyErrorKind::FreezeShape("start needs end"));
            return None;
        }
        (None, _, None, Some(_)) => {
            ctx.err(
                Some("start"),
                PolicyErrorKind::FreezeShape("end needs start"),
            );
            return None;
        }
        (None, None, None, None) => {
            ctx.err(None, PolicyErrorKind::FreezeShape("this one has neither"));
            return None;
        }
        _ => {
            ctx.err(None, PolicyErrorKind::FreezeShape("this one mixes both"));
            return None;
        }
    };
    let grace = f.grace.map_or_else(Duration::zero, Span::delta);
    let mode = f.mode.unwrap_or(default_mode);
    let escalate_after = escalation(ctx, mode, f.escalate_after);
    let reason = ctx.template(f.reason.as_deref().unwrap_or(default_reason));
    let selector = ctx.selector(f.pipelines.as_ref(), f.exclude.as_ref(), f.tags.as_ref());
    let gate = match (f.gate.unwrap_or(false), &f.gate_stages) {
        (true, Some(stages)) if stages.is_empty() => {
            ctx.err(
                Some("gate_stages"),
                PolicyErrorKind::GateStages(
                    "an empty list gates nothing; leave the key out to gate every stage after the first",
                ),
            );
            None
        }
        (true, stages) => Some(Gate {
            stages: stages.clone(),
        }),
        (false, Some(_)) => {
            ctx.err(
                Some("gate_stages"),
                PolicyErrorKind::GateStages("gate_stages needs gate = true"),
            );
            None
        }
        (false, None) => None,
    };
    Some(Rule {
        name: f.name.clone(),
        at: ctx.rule,
        kind: RuleKind::Freeze,
        mode,
        reason,
        selector,
        place: ctx.place(f.accounts.as_ref(), f.regions.as_ref()),
        rollbacks: f.rollbacks.unwrap_or(false),
        escalate_after,
        timezone: tz,
        trigger: Trigger::Freeze { schedule, grace },
        gate,
    })
}

fn escalation(ctx: &mut Ctx<'_>, mode: Mode, after: Option<Span>) -> Option<Duration> {
    let after = after?.delta();
    if mode == Mode::Abandon {
        ctx.err(Some("escalate_after"), PolicyErrorKind::EscalateWithAbandon);
        return None;
    }
    Some(after)
}

fn compile_timeout(
    t: &TimeoutSpec,
    ctx: &mut Ctx<'_>,
    default_tz: Tz,
    default_mode: Mode,
    default_reason: &str,
) -> Option<Rule> {
    let max = t.max_duration.delta();
    let mode = t.mode.unwrap_or(default_mode);
    let escalate_after = escalation(ctx, mode, t.escalate_after);
    let reason = ctx.template(t.reason.as_deref().unwrap_or(default_reason));
    let selector = ctx.selector(t.pipelines.as_ref(), t.exclude.as_ref(), t.tags.as_ref());
    Some(Rule {
        name: t.name.clone(),
        at: ctx.rule,
        kind: RuleKind::Timeout,
        mode,
        reason,
        selector,
        place: ctx.place(t.accounts.as_ref(), t.regions.as_ref()),
        rollbacks: t.rollbacks.unwrap_or(false),
        escalate_after,
        timezone: default_tz,
        trigger: Trigger::Timeout { max },
        gate: None,
    })
}

fn compile_exempt(e: &ExemptSpec, ctx: &mut Ctx<'_>, default_tz: Tz) -> Exemption {
    let until = e
        .until
        .as_deref()
        .and_then(|u| ctx.time("until", u, default_tz));
    Exemption {
        name: e.name.clone(),
        selector: ctx.selector(e.pipelines.as_ref(), e.exclude.as_ref(), e.tags.as_ref()),
        place: ctx.place(e.accounts.as_ref(), e.regions.as_ref()),
        until,
        reason: e.reason.clone(),
        source: ExemptionSource::Config,
        rule: None,
    }
}

//! Seeding: the fixture file format, and a deterministic generated fleet.
//!
//! A fixture is JSON (see `examples/fixture.json` in this crate). Times are relative to the
//! emulator's clock when the fixture is loaded (`started_ago = "15m"`), so one fixture serves any
//! date. Every field but a pipeline's `name` has a default:
//!
//! ```json
//! { "pipelines": [ {
//!     "name": "prod-web",                  // the model's PipelineName pattern
//!     "execution_mode": "PARALLEL",        // SUPERSEDED (default) | QUEUED | PARALLEL
//!     "tags": { "env": "prod" },
//!     "stages": [ { "name": "Build", "actions": [
//!         { "name": "Build", "category": "Build", "provider": "CodeBuild", "duration": "5m" } ] } ],
//!     "executions": [
//!         { "status": "InProgress", "started_ago": "12m" },
//!         { "status": "Succeeded", "started_ago": "2h", "duration": "20m", "type": "STANDARD" },
//!         { "id": "3f2a…", "status": "InProgress", "started_ago": "1m", "type": "ROLLBACK",
//!           "trigger": "AutomatedRollback" } ] } ],
//!   "calendars": {                         // SSM Change Calendars (GetCalendarState)
//!     "prod-changes": [                    // a calendar's name: its CLOSED intervals
//!         { "started_ago": "1h", "duration": "3h" },
//!         { "starts_in": "2d", "duration": "2d14h" } ] } }
//! ```
//!
//! Executions are listed oldest first or in any order: they are sorted by start time. A
//! calendar is OPEN but for its CLOSED intervals (each `started_ago` or `starts_in`, and a
//! `duration`); `GetCalendarState` names the next start or end as `NextTransitionTime`. A
//! fixture with `calendars` replaces the world's calendars (one without leaves them: the admin
//! API's `PUT /_emulator/calendars` may have set them).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::Millis;
use crate::model::Model;
use crate::state::{
    ActionDef, ExecStatus, Execution, ExecutionMode, ExecutionType, Pipeline, StageDef, StopInfo,
    Template, TriggerType,
};

/// The default account id of the emulated account.
pub const DEFAULT_ACCOUNT: &str = "123456789012";
/// The default region of the emulated account.
pub const DEFAULT_REGION: &str = "us-east-1";

/// A fixture file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// The pipelines to create.
    #[serde(default)]
    pub pipelines: Vec<PipelineFixture>,
    /// SSM Change Calendars by name: their CLOSED intervals.
    #[serde(default)]
    pub calendars: Option<BTreeMap<String, Vec<ClosedFixture>>>,
}

/// SSM Change Calendars by name: their CLOSED intervals (epoch ms, end exclusive).
pub type Calendars = BTreeMap<String, Vec<(Millis, Millis)>>;

/// One CLOSED interval of a fixture calendar, relative to the emulator's clock when the fixture
/// is loaded: exactly one of `started_ago` and `starts_in`, and how long it lasts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClosedFixture {
    /// It began this long before the fixture is loaded.
    #[serde(default, with = "humantime_serde")]
    pub started_ago: Option<Duration>,
    /// It begins this long after the fixture is loaded.
    #[serde(default, with = "humantime_serde")]
    pub starts_in: Option<Duration>,
    /// How long it is CLOSED.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// One pipeline of a fixture.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFixture {
    /// Pipeline name.
    pub name: String,
    /// Execution mode (default SUPERSEDED).
    #[serde(default)]
    pub execution_mode: Option<ExecutionMode>,
    /// Resource tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Stages (default: Source 30s, Build 5m, Deploy 10m).
    #[serde(default)]
    pub stages: Option<Vec<StageFixture>>,
    /// Executions, in any order.
    #[serde(default)]
    pub executions: Vec<ExecutionFixture>,
}

/// One stage of a fixture pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageFixture {
    /// Stage name.
    pub name: String,
    /// Actions in run order.
    pub actions: Vec<ActionFixture>,
}

/// One action of a fixture stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionFixture {
    /// Action name.
    pub name: String,
    /// ActionCategory (default Build).
    #[serde(default)]
    pub category: Option<String>,
    /// ActionProvider (default CodeBuild).
    #[serde(default)]
    pub provider: Option<String>,
    /// How long it runs.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// One execution of a fixture pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionFixture {
    /// Execution id (default: generated).
    #[serde(default)]
    pub id: Option<Uuid>,
    /// Status: InProgress, or a final one (Succeeded, Failed, Stopped, Superseded, Cancelled).
    pub status: ExecStatus,
    /// How long before the fixture is loaded it started.
    #[serde(with = "humantime_serde")]
    pub started_ago: Duration,
    /// For final statuses: how long it ran (default: the template's total, capped at `started_ago`).
    #[serde(default, with = "humantime_serde")]
    pub duration: Option<Duration>,
    /// STANDARD (default) or ROLLBACK.
    #[serde(default, rename = "type")]
    pub kind: ExecutionType,
    /// Trigger type (default StartPipelineExecution).
    #[serde(default)]
    pub trigger: TriggerType,
    /// For InProgress: the flattened action index at which it will fail.
    #[serde(default)]
    pub fail_at: Option<u16>,
    /// For Stopped: the stop reason.
    #[serde(default)]
    pub stop_reason: Option<String>,
}

/// A fixture that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// A calendar the service could not have.
    #[error("calendar {calendar:?}: {message}")]
    Calendar {
        /// The calendar at fault.
        calendar: String,
        /// What is wrong.
        message: String,
    },
    /// Not valid JSON for the format.
    #[error("fixture is not valid: {0}")]
    Parse(#[from] serde_json::Error),
    /// Valid JSON with values the service would refuse.
    #[error("pipeline {pipeline:?}: {message}")]
    Invalid {
        /// The pipeline at fault.
        pipeline: String,
        /// What is wrong.
        message: String,
    },
}

/// The default stage layout: Source 30 s, Build 5 min, Deploy 10 min.
pub fn default_stages() -> Vec<StageDef> {
    vec![
        stage(
            "Source",
            &[("Source", "Source", "CodeStarSourceConnection", 30)],
        ),
        stage("Build", &[("Build", "Build", "CodeBuild", 300)]),
        stage("Deploy", &[("Deploy", "Deploy", "CodeDeploy", 600)]),
    ]
}

fn stage(name: &str, actions: &[(&str, &str, &str, i64)]) -> StageDef {
    StageDef {
        name: name.to_string(),
        actions: actions
            .iter()
            .map(|(n, c, p, secs)| ActionDef {
                name: n.to_string(),
                category: c.to_string(),
                provider: p.to_string(),
                duration_ms: secs * 1000,
            })
            .collect(),
    }
}

impl Fixture {
    /// Parses a fixture from JSON.
    pub fn from_json(json: &str) -> Result<Fixture, FixtureError> {
        Ok(serde_json::from_str(json)?)
    }

    /// The calendars of this fixture at emulator time `now`: each name's CLOSED intervals
    /// (epoch ms, end exclusive), sorted; `None` if the fixture has no `calendars`.
    pub fn build_calendars(&self, now: Millis) -> Result<Option<Calendars>, FixtureError> {
        let Some(calendars) = &self.calendars else {
            return Ok(None);
        };
        let mut out = BTreeMap::new();
        for (name, closed) in calendars {
            let invalid = |message: String| FixtureError::Calendar {
                calendar: name.clone(),
                message,
            };
            // SSM's document names: 3 to 128 of a-z A-Z 0-9 _ - .
            let valid = (3..=128).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !valid {
                return Err(invalid(
                    "a calendar name is 3 to 128 of a-z A-Z 0-9 _ - . (SSM's document names)"
                        .into(),
                ));
            }
            let mut spans = Vec::with_capacity(closed.len());
            for (i, c) in closed.iter().enumerate() {
                let start = match (c.started_ago, c.starts_in) {
                    (Some(ago), None) => now - ago.as_millis() as Millis,
                    (None, Some(later)) => now + later.as_millis() as Millis,
                    _ => {
                        return Err(invalid(format!(
                            "interval {i}: give exactly one of started_ago and starts_in"
                        )));
                    }
                };
                if c.duration.is_zero() {
                    return Err(invalid(format!("interval {i}: duration must be positive")));
                }
                spans.push((start, start + c.duration.as_millis() as Millis));
            }
            spans.sort_unstable();
            out.insert(name.clone(), spans);
        }
        Ok(Some(out))
    }

    /// Builds the pipelines of this fixture at emulator time `now`.
    pub fn build(&self, now: Millis, rng: &mut impl Rng) -> Result<Vec<Pipeline>, FixtureError> {
        let default_template = Arc::new(Template::new(default_stages()));
        let mut seen = HashMap::new();
        let mut out = Vec::with_capacity(self.pipelines.len());
        for pf in &self.pipelines {
            let invalid = |message: String| FixtureError::Invalid {
                pipeline: pf.name.clone(),
                message,
            };
            let v =
                Model::get().validate_input("GetPipeline", &serde_json::json!({"name": pf.name}));
            if let Some(v) = v.first() {
                return Err(invalid(v.message.clone()));
            }
            if seen.insert(pf.name.clone(), ()).is_some() {
                return Err(invalid("defined twice".into()));
            }
            let template = match &pf.stages {
                None => Arc::clone(&default_template),
                Some(stages) => {
                    if stages.is_empty() || stages.iter().any(|s| s.actions.is_empty()) {
                        return Err(invalid(
                            "every pipeline needs a stage, every stage an action".into(),
                        ));
                    }
                    Arc::new(Template::new(
                        stages
                            .iter()
                            .map(|s| StageDef {
                                name: s.name.clone(),
                                actions: s
                                    .actions
                                    .iter()
                                    .map(|a| ActionDef {
                                        name: a.name.clone(),
                                        category: a
                                            .category
                                            .clone()
                                            .unwrap_or_else(|| "Build".into()),
                                        provider: a
                                            .provider
                                            .clone()
                                            .unwrap_or_else(|| "CodeBuild".into()),
                                        duration_ms: a.duration.as_millis() as Millis,
                                    })
                                    .collect(),
                            })
                            .collect(),
                    ))
                }
            };
            let mode = pf.execution_mode.unwrap_or(ExecutionMode::Superseded);
            let mut executions = Vec::with_capacity(pf.executions.len());
            for ef in &pf.executions {
                if ef
                    .fail_at
                    .is_some_and(|k| k as usize >= template.action_count())
                {
                    return Err(invalid(format!(
                        "fail_at {:?} is past the last action",
                        ef.fail_at
                    )));
                }
                let created = now - ef.started_ago.as_millis() as Millis;
                let id = ef.id.unwrap_or_else(|| random_uuid(rng));
                let mut ex = match ef.status {
                    ExecStatus::InProgress => Execution::new(id, created, mode),
                    ExecStatus::Stopping => {
                        return Err(invalid(
                            "status Stopping cannot be seeded; seed InProgress and stop it".into(),
                        ));
                    }
                    final_status => {
                        let ran = ef
                            .duration
                            .map_or(template.total(), |d| d.as_millis() as Millis)
                            .min(now - created)
                            .max(1);
                        let mut ex =
                            Execution::finished(id, created, ran, final_status, mode, &template);
                        if final_status == ExecStatus::Stopped {
                            ex.stop = Some(Box::new(StopInfo {
                                at: created + ran,
                                abandon_at: None,
                                reason: ef.stop_reason.clone(),
                            }));
                        }
                        ex
                    }
                };
                ex.kind = ef.kind;
                ex.trigger = ef.trigger;
                ex.fail_at = ef.fail_at;
                executions.push(ex);
            }
            executions.sort_by_key(|e| e.created);
            let created = executions.first().map_or(now, |e| e.created).min(now) - 86_400_000;
            let tags = pf
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            out.push(Pipeline::new(
                pf.name.clone(),
                mode,
                template,
                created,
                now - 86_400_000,
                tags,
                executions,
                now,
            ));
        }
        Ok(out)
    }
}

/// A random lower-case UUID (v4) from the emulator's seeded generator.
pub fn random_uuid(rng: &mut impl Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

/// How to generate a fleet.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    /// Number of pipelines.
    pub pipelines: usize,
    /// Seed of the generator: the same seed gives the same fleet.
    #[serde(default)]
    pub seed: u64,
    /// Finished executions of history per pipeline.
    #[serde(default = "default_history")]
    pub history: usize,
}

fn default_history() -> usize {
    5
}

const ENVS: [&str; 3] = ["prod", "staging", "dev"];
const SERVICES: [&str; 16] = [
    "web", "api", "payments", "search", "auth", "billing", "checkout", "catalog", "images",
    "notify", "orders", "profile", "reports", "gateway", "ledger", "events",
];
const TEAMS: [&str; 5] = ["core", "growth", "data", "platform", "money"];

/// Generates a realistic fleet: pipelines named `{env}-{service}-{nnnnn}` tagged `env` and
/// `team`; mostly SUPERSEDED, some QUEUED and PARALLEL; about a third with an execution in
/// progress, PARALLEL ones often with several, a few of them rollbacks, a few running for hours;
/// and `history` finished executions each.
pub fn generate_fleet(spec: FleetSpec, now: Millis, rng: &mut impl Rng) -> Vec<Pipeline> {
    let short = Arc::new(Template::new(default_stages()));
    let long = Arc::new(Template::new(vec![
        stage(
            "Source",
            &[("Source", "Source", "CodeStarSourceConnection", 30)],
        ),
        stage(
            "Build",
            &[
                ("Build", "Build", "CodeBuild", 600),
                ("IntegrationTest", "Test", "CodeBuild", 900),
            ],
        ),
        stage(
            "Approve",
            &[("ManualApproval", "Approval", "Manual", 86_400)],
        ),
        stage("Deploy", &[("Deploy", "Deploy", "CodeDeploy", 1_200)]),
    ]));
    let templates = [short, long];
    let width = spec.pipelines.max(1).to_string().len().max(5);
    let mut out = Vec::with_capacity(spec.pipelines);
    for i in 0..spec.pipelines {
        let env = ENVS[i % ENVS.len()];
        let service = SERVICES.choose(rng).copied().unwrap_or("web");
        let team = TEAMS.choose(rng).copied().unwrap_or("core");
        let template = Arc::clone(&templates[usize::from(rng.random_bool(0.3))]);
        let mode = match rng.random_range(0..100) {
            0..70 => ExecutionMode::Superseded,
            70..85 => ExecutionMode::Queued,
            _ => ExecutionMode::Parallel,
        };
        let total = template.total();
        let mut executions = Vec::with_capacity(spec.history + 6);
        // History: finished executions, one every few hours back in time.
        let mut t = now - total - rng.random_range(3_600_000..7_200_000);
        for _ in 0..spec.history {
            let id = random_uuid(rng);
            let (status, ran) = match rng.random_range(0..100) {
                0..80 => (ExecStatus::Succeeded, total.min(2_000_000)),
                80..90 => (
                    ExecStatus::Failed,
                    rng.random_range(1..total.min(2_000_000)),
                ),
                90..95 => (
                    ExecStatus::Stopped,
                    rng.random_range(1..total.min(2_000_000)),
                ),
                _ => (
                    ExecStatus::Superseded,
                    rng.random_range(1..total.min(2_000_000)),
                ),
            };
            let mut ex = Execution::finished(id, t, ran, status, mode, &template);
            ex.trigger = TriggerType::Webhook;
            executions.push(ex);
            t -= rng.random_range(3_600_000..14_400_000);
        }
        executions.reverse();
        // Activity now.
        let active = match mode {
            ExecutionMode::Parallel if rng.random_bool(0.6) => rng.random_range(2..=6),
            _ if rng.random_bool(0.33) => 1,
            _ => 0,
        };
        let mut starts: Vec<Millis> = (0..active)
            .map(|_| {
                // Mostly started within the template's run time; one in twenty running for hours.
                let span = if rng.random_bool(0.05) {
                    6 * 3_600_000
                } else {
                    total.min(1_800_000)
                };
                now - rng.random_range(1_000..span.max(2_000))
            })
            .collect();
        starts.sort_unstable();
        for start in starts {
            let mut ex = Execution::new(random_uuid(rng), start, mode);
            ex.trigger = TriggerType::Webhook;
            if rng.random_bool(0.03) {
                ex.kind = ExecutionType::Rollback;
                ex.trigger = TriggerType::AutomatedRollback;
                ex.rollback_target = executions.first().map(|e| e.id);
            }
            executions.push(ex);
        }
        let name = format!("{env}-{service}-{i:0width$}");
        out.push(Pipeline::new(
            name,
            mode,
            template,
            now - 180 * 86_400_000,
            now - 30 * 86_400_000,
            vec![("env".into(), env.into()), ("team".into(), team.into())],
            executions,
            now,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn same_seed_same_fleet() {
        let spec = FleetSpec {
            pipelines: 50,
            seed: 7,
            history: 3,
        };
        let a = generate_fleet(spec, 1_000_000_000_000, &mut ChaCha8Rng::seed_from_u64(7));
        let b = generate_fleet(spec, 1_000_000_000_000, &mut ChaCha8Rng::seed_from_u64(7));
        let ids = |f: &[Pipeline]| -> Vec<(String, Vec<Uuid>)> {
            f.iter()
                .map(|p| (p.name.clone(), p.executions.iter().map(|e| e.id).collect()))
                .collect()
        };
        assert_eq!(ids(&a), ids(&b));
    }

    #[test]
    fn generated_execution_ids_are_unique_across_the_fleet() {
        let spec = FleetSpec {
            pipelines: 300,
            seed: 5,
            history: 5,
        };
        let fleet = generate_fleet(spec, 1_000_000_000_000, &mut ChaCha8Rng::seed_from_u64(5));
        let ids: Vec<Uuid> = fleet
            .iter()
            .flat_map(|p| p.executions.iter().map(|e| e.id))
            .collect();
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
    }

    #[test]
    fn fixture_rejects_bad_pipeline_name_with_the_model_message() {
        let f = Fixture::from_json(r#"{"pipelines":[{"name":"bad name"}]}"#).unwrap();
        let err = f
            .build(0, &mut ChaCha8Rng::seed_from_u64(0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("regular expression pattern"), "{err}");
    }

    #[test]
    fn fixture_rejects_unknown_keys() {
        let err = Fixture::from_json(r#"{"pipelines":[{"name":"a","colour":"red"}]}"#).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }
}

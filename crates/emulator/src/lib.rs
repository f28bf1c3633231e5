//! `stopd-emulator`: a local AWS CodePipeline for stopd's tests, benchmarks and demo.
//!
//! It speaks the awsJson1_1 protocol of CodePipeline (API version 2015-07-09) for the operations
//! stopd uses — ListPipelines, GetPipeline, GetPipelineState, ListPipelineExecutions,
//! GetPipelineExecution, StartPipelineExecution, StopPipelineExecution, ListTagsForResource, and
//! DisableStageTransition / EnableStageTransition — and SSM's GetCalendarState (Change Calendars,
//! `api::calendars`), so that the official AWS SDKs and the AWS CLI
//! work against it unchanged. Like AWS it wants SigV4-signed requests ([`auth`]). Requests are validated
//! against the published service model ([`model`]), executions move through their stages on the
//! emulator's clock ([`clock`], [`state`]), faults are injected on request ([`faults`]), and every
//! call is logged for tests to assert on.
//!
//! In a test:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use stopd_emulator::{Emulator, EmulatorConfig, FleetSpec};
//! let emulator = Emulator::new(EmulatorConfig::default()); // manual clock at "now"
//! emulator.seed_fleet(FleetSpec { pipelines: 20, seed: 1, history: 3 });
//! let server = emulator.serve("127.0.0.1:0".parse().unwrap()).await?;
//! // point the SDK at server.endpoint_url(), then assert on emulator.calls()
//! emulator.advance(std::time::Duration::from_secs(60));
//! server.shutdown().await;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod clock;
pub mod error;
pub mod events;
pub mod faults;
pub mod fixture;
pub mod model;
pub mod queue;
pub mod server;
pub mod state;
pub mod sts;
pub mod world;

pub use clock::{Clock, Millis};
pub use error::ApiError;
pub use faults::{Fault, FaultPlan, FaultRule, Latency, RateLimit};
pub use fixture::{ClosedFixture, Fixture, FixtureError, FleetSpec};
pub use server::ServerHandle;
pub use world::{CallRecord, Emulator, EmulatorConfig, ExecutionView, InFlight};

#[cfg(test)]
mod layering {
    use std::collections::{BTreeMap, BTreeSet};

    /// Every module of the library, by path, with its source (a module split into files is its
    /// `mod.rs`, its submodules their own files).
    const MODULES: [(&str, &str); 23] = [
        ("api", include_str!("api/mod.rs")),
        ("api::calendars", include_str!("api/calendars.rs")),
        ("api::sqs", include_str!("api/sqs.rs")),
        ("api::executions", include_str!("api/executions.rs")),
        ("api::pipelines", include_str!("api/pipelines.rs")),
        ("api::request", include_str!("api/request.rs")),
        ("api::stop", include_str!("api/stop.rs")),
        ("api::transitions", include_str!("api/transitions.rs")),
        ("auth", include_str!("auth.rs")),
        ("clock", include_str!("clock.rs")),
        ("error", include_str!("error.rs")),
        ("events", include_str!("events.rs")),
        ("faults", include_str!("faults.rs")),
        ("fixture", include_str!("fixture.rs")),
        ("model", include_str!("model.rs")),
        ("queue", include_str!("queue.rs")),
        ("server", include_str!("server.rs")),
        ("state", include_str!("state/mod.rs")),
        ("state::execution", include_str!("state/execution.rs")),
        ("state::pipeline", include_str!("state/pipeline.rs")),
        ("state::template", include_str!("state/template.rs")),
        ("sts", include_str!("sts.rs")),
        ("world", include_str!("world.rs")),
    ];

    /// The module a path names: its longest prefix that is a module (`state::Pipeline` is
    /// `state`, `api::request::str_field` is `api::request`).
    fn module_of(path: &str) -> Option<&'static str> {
        let segments: Vec<&str> = path.split("::").collect();
        (1..=segments.len()).rev().find_map(|n| {
            let prefix = segments[..n].join("::");
            MODULES.iter().map(|m| m.0).find(|m| *m == prefix)
        })
    }

    /// The paths a use tree (or a plain path) at the start of `s` names: `a::{b, c::{d, e}}`
    /// is `a::b`, `a::c::d` and `a::c::e`.
    fn paths(s: &str) -> Vec<String> {
        let s = s.trim_start();
        if let Some(group) = s.strip_prefix('{') {
            let (mut depth, mut items, mut item) = (0, Vec::new(), String::new());
            for c in group.chars() {
                match c {
                    '}' if depth == 0 => break,
                    ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                    _ => {
                        depth += match c {
                            '{' => 1,
                            '}' => -1,
                            _ => 0,
                        };
                        item.push(c);
                    }
                }
            }
            items.push(item);
            return items.iter().flat_map(|i| paths(i)).collect();
        }
        let head: String = s
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        match s[head.len()..].strip_prefix("::") {
            Some(rest) => paths(rest)
                .into_iter()
                .map(|p| format!("{head}::{p}"))
                .collect(),
            None => vec![head],
        }
    }

    /// The modules that module `name`, of source `src`, uses items of: every path that starts
    /// at `crate::`, `super::`, `self::` or one of its submodules' names (in `use` lines and
    /// expressions, groups included) counts for the module it names. Comments are left out,
    /// and so is the `tests` module at the end of a file (its `super` is the file itself).
    fn imports(name: &str, src: &str) -> BTreeSet<&'static str> {
        let library = src.split("#[cfg(test)]\nmod tests").next().unwrap_or(src);
        let code: String = library
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let join = |base: &str, path: &str| match base {
            "" => path.to_string(),
            _ => format!("{base}::{path}"),
        };
        let parent = name.rsplit_once("::").map_or("", |(p, _)| p);
        let is_child = |head: &str| MODULES.iter().any(|m| m.0 == join(name, head));
        let mut out = BTreeSet::new();
        for (at, _) in code.match_indices("::") {
            let before = &code[..at];
            let start = before
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |i| i + 1);
            if before[..start].ends_with(':') {
                continue; // not the first segment of its path
            }
            let base = match &before[start..] {
                "crate" => String::new(),
                "super" => parent.to_string(),
                "self" => name.to_string(),
                child if is_child(child) => join(name, child),
                _ => continue,
            };
            for path in paths(&code[at + 2..]) {
                out.extend(module_of(&join(&base, &path)).filter(|m| *m != name));
            }
        }
        out
    }

    fn graph() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
        MODULES
            .iter()
            .map(|(name, src)| (*name, imports(name, src)))
            .collect()
    }

    /// The modules a source declares (`mod x;`, `pub mod x;`), under `parent`.
    fn declared(parent: &str, src: &str) -> BTreeSet<String> {
        src.lines()
            .filter_map(|l| l.strip_prefix("pub mod ").or(l.strip_prefix("mod ")))
            .filter_map(|l| l.strip_suffix(';'))
            .map(|m| match parent {
                "" => m.to_string(),
                _ => format!("{parent}::{m}"),
            })
            .collect()
    }

    #[test]
    fn every_module_of_the_library_is_checked() {
        let mut modules = declared("", include_str!("lib.rs"));
        for (name, src) in MODULES {
            modules.extend(declared(name, src));
        }
        let checked: BTreeSet<String> = graph().into_keys().map(str::to_string).collect();
        assert_eq!(modules, checked, "the declared modules and MODULES differ");
    }

    #[test]
    fn the_import_reader_sees_paths_and_groups() {
        let src = "use crate::api::Answer;\n// crate::sts\nlet x = crate::clock::now();\n\
                   use crate::{auth::AuthHeaders, world::{Emulator, World}};";
        let want: BTreeSet<&str> = ["api", "auth", "clock", "world"].into();
        assert_eq!(imports("server", src), want);
        // Inside a split module: `super::`, a submodule's name, nested groups; not a later
        // segment of a path, nor the tests at the end of the file.
        let src = "use super::executions::Limit;\nuse crate::{api::{Answer, request::{ApiResult, \
                   str_field}}, clock::Millis};\n#[cfg(test)]\nmod tests {\n    \
                   use crate::world::World;\n}";
        let want: BTreeSet<&str> = ["api", "api::executions", "api::request", "clock"].into();
        assert_eq!(imports("api::stop", src), want);
        let src = "pub use executions::LIMIT;\nlet v = pipelines::get(w);\nuse self::stop::f;\n\
                   let e = std::transitions::x();";
        let want: BTreeSet<&str> = ["api::executions", "api::pipelines", "api::stop"].into();
        assert_eq!(imports("api", src), want);
        assert_eq!(imports("api::request", "use super::*;"), ["api"].into());
    }

    /// No two modules import each other, directly or through others (api.rs and auth.rs once
    /// did, over `ApiError`, which now lives in error.rs). Submodules count as modules: a
    /// `mod.rs` that re-exports or calls its submodules is not imported by them.
    #[test]
    fn modules_import_each_other_in_no_circle() {
        let graph = graph();
        // Depth-first search; `path` is the chain of modules being visited.
        fn visit<'a>(
            m: &'a str,
            graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) {
            if let Some(at) = path.iter().position(|p| *p == m) {
                panic!("import circle: {} -> {m}", path[at..].join(" -> "));
            }
            if done.contains(m) {
                return;
            }
            path.push(m);
            for dep in &graph[m] {
                visit(dep, graph, path, done);
            }
            path.pop();
            done.insert(m);
        }
        let mut done = BTreeSet::new();
        for m in graph.keys() {
            visit(m, &graph, &mut Vec::new(), &mut done);
        }
    }

    /// Inside the split modules the imports run one way: `api`'s operation families share
    /// `api::request` and nothing of each other or of `api`; `state`'s records build up from the
    /// template to the pipeline, and `state` only gathers them.
    #[test]
    fn split_modules_import_one_way_inside() {
        let graph = graph();
        let want: [(&str, &[&str]); 12] = [
            (
                "api",
                &[
                    "api::calendars",
                    "api::executions",
                    "api::pipelines",
                    "api::request",
                    "api::sqs",
                    "api::stop",
                    "api::transitions",
                ],
            ),
            ("api::calendars", &["api::request"]),
            ("api::sqs", &["api::request"]),
            ("api::executions", &["api::request"]),
            ("api::pipelines", &["api::request"]),
            ("api::request", &[]),
            ("api::stop", &["api::request"]),
            ("api::transitions", &["api::request"]),
            (
                "state",
                &["state::execution", "state::pipeline", "state::template"],
            ),
            ("state::execution", &["state::template"]),
            ("state::pipeline", &["state::execution", "state::template"]),
            ("state::template", &[]),
        ];
        for (m, deps) in want {
            let family = m.split("::").next().unwrap_or(m);
            let inside: BTreeSet<&str> = graph[m]
                .iter()
                .copied()
                .filter(|d| d.split("::").next() == Some(family))
                .collect();
            let deps: BTreeSet<&str> = deps.iter().copied().collect();
            assert_eq!(inside, deps, "{m}'s imports inside its module");
        }
    }

    /// `ApiError` is a leaf: error.rs imports nothing from the crate, and auth.rs and sts.rs
    /// take it from there, not from api.rs.
    #[test]
    fn the_error_module_is_a_leaf_and_auth_does_not_import_api() {
        let graph = graph();
        assert_eq!(
            graph["error"],
            BTreeSet::new(),
            "error.rs imports from the crate"
        );
        for m in ["auth", "sts"] {
            assert!(!graph[m].contains("api"), "{m}.rs imports api.rs");
        }
    }

    /// The protocol layer (`api`, `auth`) sits on the world; the world and the state never
    /// reach back into it (they once imported each other).
    #[test]
    fn world_and_state_do_not_import_the_protocol_layer() {
        let lower = MODULES.iter().filter(|(name, _)| {
            ["world", "state", "faults", "queue", "events"]
                .contains(&name.split("::").next().unwrap_or(name))
        });
        for (name, src) in lower {
            for needle in ["use crate::api", "use crate::auth", "api::", "auth::"] {
                assert!(!src.contains(needle), "{name} uses {needle}");
            }
        }
    }
}

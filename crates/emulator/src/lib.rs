//! `stopd-emulator`: a local AWS CodePipeline for stopd's tests, benchmarks and demo.
//!
//! It speaks the awsJson1_1 protocol of CodePipeline (API version 2015-07-09) for the operations
//! stopd uses — ListPipelines, GetPipeline, GetPipelineState, ListPipelineExecutions,
//! GetPipelineExecution, StartPipelineExecution, StopPipelineExecution, ListTagsForResource, and
//! DisableStageTransition / EnableStageTransition — so that the official AWS SDKs and the AWS CLI
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
pub mod faults;
pub mod fixture;
pub mod model;
pub mod server;
pub mod state;
pub mod sts;
pub mod world;

pub use clock::{Clock, Millis};
pub use error::ApiError;
pub use faults::{Fault, FaultPlan, FaultRule, Latency, RateLimit};
pub use fixture::{Fixture, FleetSpec};
pub use server::ServerHandle;
pub use world::{CallRecord, Emulator, EmulatorConfig, ExecutionView, InFlight};

#[cfg(test)]
mod layering {
    use std::collections::{BTreeMap, BTreeSet};

    /// Every module of the library, with its source.
    const MODULES: [(&str, &str); 11] = [
        ("api", include_str!("api.rs")),
        ("auth", include_str!("auth.rs")),
        ("clock", include_str!("clock.rs")),
        ("error", include_str!("error.rs")),
        ("faults", include_str!("faults.rs")),
        ("fixture", include_str!("fixture.rs")),
        ("model", include_str!("model.rs")),
        ("server", include_str!("server.rs")),
        ("state", include_str!("state.rs")),
        ("sts", include_str!("sts.rs")),
        ("world", include_str!("world.rs")),
    ];

    /// The modules `src` reaches through `crate::name` (in `use` lines and paths, `use
    /// crate::{a, b}` included), comments left out.
    fn imports(src: &str) -> BTreeSet<&'static str> {
        let code: String = src
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let known = |name: &str| MODULES.iter().map(|m| m.0).find(|m| *m == name);
        let ident = |s: &str| -> String {
            s.trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        };
        let mut out = BTreeSet::new();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let names: Vec<String> = match rest.strip_prefix('{') {
                Some(group) => {
                    let (mut depth, mut items, mut item) = (0, Vec::new(), String::new());
                    for c in group.chars() {
                        match c {
                            '{' => depth += 1,
                            '}' if depth == 0 => break,
                            '}' => depth -= 1,
                            ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                            _ if depth == 0 => item.push(c),
                            _ => {}
                        }
                    }
                    items.push(item);
                    items.iter().map(|i| ident(i)).collect()
                }
                None => vec![ident(rest)],
            };
            out.extend(names.iter().filter_map(|n| known(n)));
        }
        out
    }

    fn graph() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
        MODULES
            .iter()
            .map(|(name, src)| {
                let mut deps = imports(src);
                deps.remove(name);
                (*name, deps)
            })
            .collect()
    }

    #[test]
    fn every_module_of_the_library_is_checked() {
        let declared: BTreeSet<&str> = include_str!("lib.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("pub mod ").or(l.strip_prefix("mod ")))
            .filter_map(|l| l.strip_suffix(';'))
            .collect();
        let checked: BTreeSet<&str> = graph().into_keys().collect();
        assert_eq!(declared, checked, "lib.rs's modules and MODULES differ");
    }

    #[test]
    fn the_import_reader_sees_paths_and_groups() {
        let src = "use crate::api::Answer;\n// crate::sts\nlet x = crate::clock::now();\n\
                   use crate::{auth::AuthHeaders, world::{Emulator, World}};";
        let want: BTreeSet<&str> = ["api", "auth", "clock", "world"].into();
        assert_eq!(imports(src), want);
    }

    /// No two modules import each other, directly or through others (api.rs and auth.rs once
    /// did, over `ApiError`, which now lives in error.rs).
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
        for (file, src) in [
            ("world.rs", include_str!("world.rs")),
            ("state.rs", include_str!("state.rs")),
            ("faults.rs", include_str!("faults.rs")),
        ] {
            for needle in ["use crate::api", "use crate::auth", "api::", "auth::"] {
                assert!(!src.contains(needle), "{file} uses {needle}");
            }
        }
    }
}

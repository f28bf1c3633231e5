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
pub mod faults;
pub mod fixture;
pub mod model;
pub mod server;
pub mod state;
pub mod sts;
pub mod world;

pub use clock::{Clock, Millis};
pub use faults::{Fault, FaultPlan, FaultRule, Latency, RateLimit};
pub use fixture::{Fixture, FleetSpec};
pub use server::ServerHandle;
pub use world::{CallRecord, Emulator, EmulatorConfig, ExecutionView, InFlight};

#[cfg(test)]
mod layering {
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

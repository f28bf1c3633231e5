//! StopPipelineExecution: the operation stopd exists to call. The lifecycle of a stop (stop and
//! wait, abandon, a second request) is the state's ([`crate::state::Pipeline::stop`]); this
//! turns its result into the answer AWS gives.

use serde_json::{Value, json};

use super::request::{ApiResult, parse_id, pipeline_mut, str_field};
use crate::error::ApiError;
use crate::state::StopResult;
use crate::world::World;

pub(super) fn stop_pipeline_execution(world: &mut World, input: &Value) -> ApiResult {
    let id = parse_id(input);
    let abandon = input
        .get("abandon")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let reason = input
        .get("reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    let now = world.clock.now();
    let behaviour = world.behaviour;
    let p = pipeline_mut(world, str_field(input, "pipelineName"))?;
    match p.stop(now, id, abandon, reason, behaviour) {
        StopResult::Accepted => Ok(json!({ "pipelineExecutionId": id.to_string() })),
        StopResult::Duplicated(m) => {
            Err(ApiError::bad_request("DuplicatedStopRequestException", m))
        }
        StopResult::NotStoppable(m) => Err(ApiError::bad_request(
            "PipelineExecutionNotStoppableException",
            m,
        )),
    }
}

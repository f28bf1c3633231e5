//! DisableStageTransition and EnableStageTransition: closing and opening a stage's inbound or
//! outbound transition (stopd's gates).

use serde_json::{Value, json};

use super::request::{ApiResult, pipeline_mut, str_field};
use crate::error::ApiError;
use crate::world::World;

/// DisableStageTransition / EnableStageTransition. The reason's length (1..300) and alphabet
/// (`[a-zA-Z0-9!@ \(\)\.\*\?\-]+`) are the model's DisabledReason, checked before this runs.
pub(super) fn set_stage_transition(world: &mut World, input: &Value, disable: bool) -> ApiResult {
    let now = world.clock.now();
    let behaviour = world.behaviour;
    let by = format!("arn:aws:iam::{}:user/stopd", world.account);
    let p = pipeline_mut(world, str_field(input, "pipelineName"))?;
    let stage_name = str_field(input, "stageName");
    let stage = p
        .template
        .stages
        .iter()
        .position(|s| s.name == stage_name)
        .ok_or_else(|| {
            ApiError::bad_request(
                "StageNotFoundException",
                format!("Stage {stage_name} does not exist in pipeline {}", p.name),
            )
        })?;
    let inbound = str_field(input, "transitionType") == "Inbound";
    let reason = disable.then(|| str_field(input, "reason").to_string());
    p.set_transition(now, stage, inbound, reason, by, behaviour);
    Ok(json!({}))
}

//! Stage gates: each stage's inbound transition as GetPipelineState says
//! ([`Core::pipeline_state`]), and closing or opening one
//! ([`Core::set_inbound_transition`]) with a reason the model accepts ([`gate_reason`]).

use aws_sdk_codepipeline::types::StageTransitionType;

use super::handle::Core;
use super::precheck::cut_chars;
use crate::error::ApiError;
use crate::types::CallCounts;

/// The longest reason DisableStageTransition accepts, in characters.
pub const MAX_GATE_REASON_CHARS: usize = 300;

/// A reason as DisableStageTransition accepts it: the model's alphabet
/// (`[a-zA-Z0-9!@ ()\.\*\?\-]+`; anything else becomes a space, runs of spaces one) and at
/// most 300 characters.
pub fn gate_reason(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = if c.is_ascii_alphanumeric() || "!@ ().*?-".contains(c) {
            c
        } else {
            ' '
        };
        if !(c == ' ' && out.ends_with(' ')) {
            out.push(c);
        }
    }
    let out = out.trim();
    let out = if out.is_empty() { "stopd" } else { out };
    cut_chars(out, MAX_GATE_REASON_CHARS).trim_end().to_string()
}

/// One stage's inbound transition, as GetPipelineState says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageGate {
    /// Stage name.
    pub stage: String,
    /// Whether executions may enter.
    pub enabled: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Who last changed it.
    pub last_changed_by: Option<String>,
    /// Executions waiting to enter.
    pub waiting: Vec<String>,
}

impl Core {
    /// GetPipelineState: each stage in order, its inbound transition, and the executions
    /// waiting at it.
    pub async fn pipeline_state(
        &self,
        pipeline: &str,
        calls: &mut CallCounts,
    ) -> Result<Vec<StageGate>, ApiError> {
        let client = &self.inner.client;
        let policy = self.inner.config.discovery_retry;
        let got = self
            .call("GetPipelineState", &policy, calls, || {
                let req = client.get_pipeline_state().name(pipeline);
                async move {
                    req.send()
                        .await
                        .map_err(|e| ApiError::from_sdk("GetPipelineState", e))
                }
            })
            .await
            .result?;
        Ok(got
            .stage_states()
            .iter()
            .filter_map(|st| {
                let stage = st.stage_name()?.to_string();
                let t = st.inbound_transition_state();
                let mut waiting: Vec<String> = st
                    .inbound_executions()
                    .iter()
                    .chain(st.inbound_execution())
                    .map(|e| e.pipeline_execution_id().to_string())
                    .collect();
                waiting.sort();
                waiting.dedup();
                Some(StageGate {
                    stage,
                    enabled: t.is_none_or(|t| t.enabled()),
                    disabled_reason: t.and_then(|t| t.disabled_reason()).map(str::to_string),
                    last_changed_by: t.and_then(|t| t.last_changed_by()).map(str::to_string),
                    waiting,
                })
            })
            .collect())
    }

    /// DisableStageTransition (inbound) with `reason` (already reduced by [`gate_reason`]),
    /// or EnableStageTransition (inbound) when `reason` is `None`. Retried like every call.
    pub async fn set_inbound_transition(
        &self,
        pipeline: &str,
        stage: &str,
        reason: Option<&str>,
        calls: &mut CallCounts,
    ) -> Result<(), ApiError> {
        let client = &self.inner.client;
        let policy = self.inner.config.stop_retry;
        match reason {
            Some(reason) => {
                self.call("DisableStageTransition", &policy, calls, || {
                    let req = client
                        .disable_stage_transition()
                        .pipeline_name(pipeline)
                        .stage_name(stage)
                        .transition_type(StageTransitionType::Inbound)
                        .reason(reason);
                    async move {
                        req.send()
                            .await
                            .map_err(|e| ApiError::from_sdk("DisableStageTransition", e))
                    }
                })
                .await
                .result?;
            }
            None => {
                self.call("EnableStageTransition", &policy, calls, || {
                    let req = client
                        .enable_stage_transition()
                        .pipeline_name(pipeline)
                        .stage_name(stage)
                        .transition_type(StageTransitionType::Inbound);
                    async move {
                        req.send()
                            .await
                            .map_err(|e| ApiError::from_sdk("EnableStageTransition", e))
                    }
                })
                .await
                .result?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_reasons_keep_to_the_model_alphabet_and_300_characters() {
        assert_eq!(
            gate_reason("Weekend freeze until 2026-11-30T07:00:00Z: prod_web/{x}"),
            "Weekend freeze until 2026-11-30T07 00 00Z prod web x"
        );
        assert_eq!(gate_reason("ünïcødé"), "n c d");
        assert_eq!(gate_reason(":::"), "stopd");
        assert_eq!(gate_reason(&"a".repeat(400)).len(), 300);
    }
}

//! The CodePipeline service model (botocore's `service-2.json`), loaded at start-up and used to
//! validate every request the way the real service does, and by tests to check every response
//! against the published output shapes.
//!
//! Validation is driven by the model, not retyped by hand: required members, JSON types,
//! string length and pattern, integer range, list length and enums all come from the file.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

/// The model file, embedded so that the emulator needs nothing at run time.
pub const SERVICE_MODEL_JSON: &str = include_str!("../model/service-2.json");

/// A parsed service model: shapes and operations.
#[derive(Debug)]
pub struct Model {
    /// Every shape by name.
    shapes: HashMap<String, Shape>,
    /// Every operation by name.
    operations: HashMap<String, Operation>,
}

/// One operation of the model.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Name of the input shape.
    pub input: Option<String>,
    /// Name of the output shape.
    pub output: Option<String>,
    /// Names of the modeled errors.
    pub errors: Vec<String>,
}

/// One shape of the model, reduced to what validation needs.
#[derive(Debug)]
enum Shape {
    Structure {
        members: Vec<(String, String)>,
        required: Vec<String>,
    },
    List {
        member: String,
        min: Option<i64>,
        max: Option<i64>,
    },
    Map {
        key: String,
        value: String,
    },
    String {
        min: Option<i64>,
        max: Option<i64>,
        pattern: Option<String>,
        enum_values: Option<Vec<String>>,
    },
    Integer {
        min: Option<i64>,
        max: Option<i64>,
    },
    Boolean,
    Timestamp,
    Other,
}

#[derive(Deserialize)]
struct RawModel {
    operations: HashMap<String, RawOperation>,
    shapes: HashMap<String, RawShape>,
}

#[derive(Deserialize)]
struct RawOperation {
    input: Option<RawRef>,
    output: Option<RawRef>,
    #[serde(default)]
    errors: Vec<RawRef>,
}

#[derive(Deserialize)]
struct RawRef {
    shape: String,
}

#[derive(Deserialize)]
struct RawShape {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    members: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    required: Vec<String>,
    member: Option<RawRef>,
    key: Option<RawRef>,
    value: Option<RawRef>,
    min: Option<i64>,
    max: Option<i64>,
    pattern: Option<String>,
    #[serde(rename = "enum")]
    enum_values: Option<Vec<String>>,
}

/// One constraint violation, phrased as the real service phrases it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Dotted path of the member, e.g. `pipelineName` or `variables.1.member.name`.
    pub path: String,
    /// The whole sentence for this violation.
    pub message: String,
}

impl Model {
    /// The embedded model, parsed once.
    pub fn get() -> &'static Model {
        static MODEL: OnceLock<Model> = OnceLock::new();
        MODEL.get_or_init(|| {
            Model::parse(SERVICE_MODEL_JSON).expect("the embedded service model parses")
        })
    }

    /// Parse a botocore service model.
    pub fn parse(json: &str) -> Result<Model, serde_json::Error> {
        let raw: RawModel = serde_json::from_str(json)?;
        let operations = raw
            .operations
            .into_iter()
            .map(|(name, op)| {
                (
                    name,
                    Operation {
                        input: op.input.map(|r| r.shape),
                        output: op.output.map(|r| r.shape),
                        errors: op.errors.into_iter().map(|r| r.shape).collect(),
                    },
                )
            })
            .collect();
        let shapes = raw
            .shapes
            .into_iter()
            .map(|(name, s)| {
                let shape = match s.kind.as_str() {
                    "structure" => Shape::Structure {
                        members: s
                            .members
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(m, v)| {
                                let shape = v
                                    .get("shape")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                                    .to_string();
                                (m, shape)
                            })
                            .collect(),
                        required: s.required,
                    },
                    "list" => Shape::List {
                        member: s.member.map(|r| r.shape).unwrap_or_default(),
                        min: s.min,
                        max: s.max,
                    },
                    "map" => Shape::Map {
                        key: s.key.map(|r| r.shape).unwrap_or_default(),
                        value: s.value.map(|r| r.shape).unwrap_or_default(),
                    },
                    "string" => Shape::String {
                        min: s.min,
                        max: s.max,
                        pattern: s.pattern,
                        enum_values: s.enum_values,
                    },
                    "integer" | "long" => Shape::Integer {
                        min: s.min,
                        max: s.max,
                    },
                    "boolean" => Shape::Boolean,
                    "timestamp" => Shape::Timestamp,
                    _ => Shape::Other,
                };
                (name, shape)
            })
            .collect();
        Ok(Model { shapes, operations })
    }

    /// The operation of that name, if the model has it.
    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.get(name)
    }

    /// Validate a request body against an operation's input shape, as the service does:
    /// required members, types, lengths, ranges, patterns and enums. Unknown members are
    /// ignored, as the service ignores them.
    pub fn validate_input(&self, operation: &str, body: &Value) -> Vec<Violation> {
        let mut out = Vec::new();
        if let Some(input) = self
            .operations
            .get(operation)
            .and_then(|o| o.input.as_deref())
        {
            self.walk(input, body, "", Mode::Input, &mut out);
        }
        out
    }

    /// Check a response body against an operation's output shape, strictly: every member must
    /// be one the model names, with the model's type, enum value and required members. Used by
    /// the tests that keep the emulator honest.
    pub fn check_output(&self, operation: &str, body: &Value) -> Vec<Violation> {
        let mut out = Vec::new();
        match self
            .operations
            .get(operation)
            .and_then(|o| o.output.as_deref())
        {
            Some(output) => self.walk(output, body, "", Mode::Output, &mut out),
            None => out.push(Violation {
                path: String::new(),
                message: format!("operation {operation} has no output shape"),
            }),
        }
        out
    }

    fn walk(
        &self,
        shape_name: &str,
        value: &Value,
        path: &str,
        mode: Mode,
        out: &mut Vec<Violation>,
    ) {
        let Some(shape) = self.shapes.get(shape_name) else {
            out.push(violation(
                path,
                format!("shape {shape_name} is not in the model"),
            ));
            return;
        };
        let shown = display(value);
        match shape {
            Shape::Structure { members, required } => {
                let Some(obj) = value.as_object() else {
                    out.push(violation(path, type_message(&shown, path, "structure")));
                    return;
                };
                for req in required {
                    if obj.get(req).is_none_or(Value::is_null) {
                        let p = join(path, req);
                        out.push(violation(
                            &p,
                            format!("Value null at '{p}' failed to satisfy constraint: Member must not be null"),
                        ));
                    }
                }
                for (key, v) in obj {
                    match members.iter().find(|(m, _)| m == key) {
                        Some((_, member_shape)) if !v.is_null() => {
                            self.walk(member_shape, v, &join(path, key), mode, out);
                        }
                        Some(_) => {}
                        None if mode == Mode::Output => {
                            out.push(violation(
                                &join(path, key),
                                format!("member '{key}' is not in shape {shape_name}"),
                            ));
                        }
                        None => {}
                    }
                }
            }
            Shape::List { member, min, max } => {
                let Some(items) = value.as_array() else {
                    out.push(violation(path, type_message(&shown, path, "list")));
                    return;
                };
                let len = items.len() as i64;
                if let Some(min) = min.filter(|m| len < *m) {
                    out.push(violation(
                        path,
                        format!("Value '{shown}' at '{path}' failed to satisfy constraint: Member must have length greater than or equal to {min}"),
                    ));
                }
                if let Some(max) = max.filter(|m| len > *m) {
                    out.push(violation(
                        path,
                        format!("Value '{shown}' at '{path}' failed to satisfy constraint: Member must have length less than or equal to {max}"),
                    ));
                }
                for (i, item) in items.iter().enumerate() {
                    self.walk(member, item, &format!("{path}.{}.member", i + 1), mode, out);
                }
            }
            Shape::Map { key, value: vshape } => {
                let Some(obj) = value.as_object() else {
                    out.push(violation(path, type_message(&shown, path, "map")));
                    return;
                };
                for (k, v) in obj {
                    self.walk(
                        key,
                        &Value::String(k.clone()),
                        &format!("{path}.key"),
                        mode,
                        out,
                    );
                    self.walk(vshape, v, &format!("{path}.{k}"), mode, out);
                }
            }
            Shape::String {
                min,
                max,
                pattern,
                enum_values,
            } => {
                let Some(s) = value.as_str() else {
                    out.push(violation(path, type_message(&shown, path, "string")));
                    return;
                };
                let len = s.chars().count() as i64;
                if let Some(min) = min.filter(|m| len < *m) {
                    out.push(violation(
                        path,
                        format!("Value '{s}' at '{path}' failed to satisfy constraint: Member must have length greater than or equal to {min}"),
                    ));
                }
                if let Some(max) = max.filter(|m| len > *m) {
                    out.push(violation(
                        path,
                        format!("Value '{s}' at '{path}' failed to satisfy constraint: Member must have length less than or equal to {max}"),
                    ));
                }
                if let Some(pattern) = pattern
                    && !pattern_regex(pattern).is_match(s)
                {
                    out.push(violation(
                        path,
                        format!("Value '{s}' at '{path}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}"),
                    ));
                }
                if let Some(values) = enum_values
                    && !values.iter().any(|v| v == s)
                {
                    out.push(violation(
                        path,
                        format!(
                            "Value '{s}' at '{path}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                            values.join(", ")
                        ),
                    ));
                }
            }
            Shape::Integer { min, max } => {
                let Some(n) = value.as_i64() else {
                    out.push(violation(path, type_message(&shown, path, "integer")));
                    return;
                };
                if let Some(min) = min.filter(|m| n < *m) {
                    out.push(violation(
                        path,
                        format!("Value '{n}' at '{path}' failed to satisfy constraint: Member must have value greater than or equal to {min}"),
                    ));
                }
                if let Some(max) = max.filter(|m| n > *m) {
                    out.push(violation(
                        path,
                        format!("Value '{n}' at '{path}' failed to satisfy constraint: Member must have value less than or equal to {max}"),
                    ));
                }
            }
            Shape::Boolean => {
                if !value.is_boolean() {
                    out.push(violation(path, type_message(&shown, path, "boolean")));
                }
            }
            Shape::Timestamp => {
                if !value.is_number() {
                    out.push(violation(
                        path,
                        type_message(&shown, path, "timestamp (epoch seconds)"),
                    ));
                }
            }
            Shape::Other => {}
        }
    }
}

/// Joins the violations into the service's sentence: "N validation error(s) detected: a; b".
pub fn validation_message(violations: &[Violation]) -> String {
    let n = violations.len();
    let noun = if n == 1 { "error" } else { "errors" };
    let parts: Vec<&str> = violations.iter().map(|v| v.message.as_str()).collect();
    format!("{n} validation {noun} detected: {}", parts.join("; "))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Input,
    Output,
}

fn violation(path: &str, message: String) -> Violation {
    Violation {
        path: path.to_string(),
        message,
    }
}

fn join(path: &str, member: &str) -> String {
    if path.is_empty() {
        member.to_string()
    } else {
        format!("{path}.{member}")
    }
}

fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn type_message(shown: &str, path: &str, expected: &str) -> String {
    format!(
        "Value '{shown}' at '{path}' failed to satisfy constraint: Member must be of type {expected}"
    )
}

/// The model's patterns are whole-value matches; compile each once.
fn pattern_regex(pattern: &str) -> Regex {
    static CACHE: OnceLock<std::sync::Mutex<HashMap<String, Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut guard = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    guard
        .entry(pattern.to_string())
        .or_insert_with(|| {
            Regex::new(&format!("^(?:{pattern})$")).unwrap_or_else(|_| {
                // A pattern the regex crate cannot compile constrains nothing here.
                Regex::new(".*").expect("trivial regex compiles")
            })
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stop_input_violations_name_the_member() {
        let m = Model::get();
        let v = m.validate_input(
            "StopPipelineExecution",
            &json!({"pipelineName": "bad name!", "pipelineExecutionId": "NOT-A-UUID", "reason": "x".repeat(201)}),
        );
        let paths: Vec<&str> = v.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(paths.contains(&"pipelineName"));
        assert!(paths.contains(&"pipelineExecutionId"));
        assert!(paths.contains(&"reason"));
        assert!(validation_message(&v).starts_with("3 validation errors detected: "));
    }

    #[test]
    fn missing_required_member_is_not_null_violation() {
        let v = Model::get().validate_input("GetPipeline", &json!({}));
        assert_eq!(
            v[0].message,
            "Value null at 'name' failed to satisfy constraint: Member must not be null"
        );
    }

    #[test]
    fn integer_range_and_type_are_checked() {
        let m = Model::get();
        let v = m.validate_input(
            "ListPipelineExecutions",
            &json!({"pipelineName": "p", "maxResults": 101}),
        );
        assert_eq!(v.len(), 1);
        assert!(v[0].message.contains("less than or equal to 100"));
        let v = m.validate_input(
            "ListPipelineExecutions",
            &json!({"pipelineName": "p", "maxResults": "ten"}),
        );
        assert!(v[0].message.contains("must be of type integer"));
    }

    #[test]
    fn reason_length_counts_characters_not_bytes() {
        let reason = "é".repeat(200); // 400 bytes, 200 characters
        let v = Model::get().validate_input(
            "StopPipelineExecution",
            &json!({"pipelineName": "p", "pipelineExecutionId": "00000000-0000-0000-0000-000000000000", "reason": reason}),
        );
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn output_check_rejects_unknown_members_and_bad_enums() {
        let m = Model::get();
        let v = m.check_output(
            "ListPipelineExecutions",
            &json!({"pipelineExecutionSummaries": [{"status": "Running", "bogus": 1}]}),
        );
        assert_eq!(v.len(), 2, "{v:?}");
    }
}

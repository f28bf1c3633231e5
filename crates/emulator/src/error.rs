//! The error answer of the emulator's APIs: an HTTP status, the error's name and its message.
//! A leaf: the protocol modules ([`crate::api`], [`crate::auth`], [`crate::sts`]) answer with it,
//! and it imports nothing from them.

use serde_json::{Value, json};

/// A modeled (or protocol) error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Error name (`__type` and `x-amzn-ErrorType`).
    pub code: &'static str,
    /// Human message.
    pub message: String,
}

impl ApiError {
    /// A 400 with that name.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            code,
            message: message.into(),
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> Value {
        json!({"__type": self.code, "message": self.message})
    }
}

//! Errors of CodePipeline calls, classified once: the error says whether a retry can help, and
//! the retry loop never guesses from strings (see `ARCHITECTURE.md`).

use aws_sdk_codepipeline::config::http::HttpResponse;
use aws_sdk_codepipeline::error::{ProvideErrorMetadata, SdkError};

/// What kind of failure a call met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `ThrottlingException` (or another throttling code): slow down and retry.
    Throttled,
    /// `ConflictException`: another operation is in progress; retry.
    Conflict,
    /// HTTP 5xx: retry.
    Server,
    /// The attempt timed out: retry.
    Timeout,
    /// Connection refused, reset or dropped: retry.
    Connection,
    /// The response could not be read (truncated or malformed): retry.
    BadResponse,
    /// `DuplicatedStopRequestException`: already stopping.
    DuplicatedStop,
    /// `PipelineExecutionNotStoppableException`: no longer in progress.
    NotStoppable,
    /// `PipelineNotFoundException` (or `ResourceNotFoundException`).
    PipelineNotFound,
    /// `PipelineExecutionNotFoundException`.
    ExecutionNotFound,
    /// `ValidationException`, access denied, or any other 4xx: permanent.
    Rejected,
    /// The request could not be built or sent for a reason a retry cannot change.
    Client,
}

impl ErrorKind {
    /// Whether trying again can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled
                | ErrorKind::Conflict
                | ErrorKind::Server
                | ErrorKind::Timeout
                | ErrorKind::Connection
                | ErrorKind::BadResponse
        )
    }
}

/// A failed CodePipeline call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation}: {} ({message})", code.as_deref().unwrap_or("no error code"))]
pub struct ApiError {
    /// The operation, e.g. `StopPipelineExecution`.
    pub operation: &'static str,
    /// Classification.
    pub kind: ErrorKind,
    /// The service's error code, or a name for a transport failure (`Timeout`, `Connection`).
    pub code: Option<String>,
    /// Human message.
    pub message: String,
}

impl ApiError {
    /// Classifies an SDK error.
    pub fn from_sdk<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> ApiError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let (kind, code, message) = match &err {
            SdkError::TimeoutError(_) => (
                ErrorKind::Timeout,
                Some("Timeout".into()),
                "the attempt timed out".into(),
            ),
            SdkError::DispatchFailure(d) => {
                let kind = if d.is_timeout() {
                    ErrorKind::Timeout
                } else if d.is_io() || d.is_other() {
                    ErrorKind::Connection
                } else {
                    ErrorKind::Client
                };
                (kind, Some(format!("{kind:?}")), chain(&err))
            }
            SdkError::ResponseError(_) => (
                ErrorKind::BadResponse,
                Some("BadResponse".into()),
                chain(&err),
            ),
            SdkError::ConstructionFailure(_) => (ErrorKind::Client, None, chain(&err)),
            SdkError::ServiceError(se) => {
                let e = se.err();
                let code = e.code().map(str::to_string);
                let status = se.raw().status().as_u16();
                let kind = classify(code.as_deref(), status);
                (kind, code, e.message().unwrap_or("").to_string())
            }
            _ => (ErrorKind::Client, None, chain(&err)),
        };
        ApiError {
            operation,
            kind,
            code,
            message,
        }
    }

    /// A failure that happened before any call (a request that cannot be valid).
    pub fn precheck(operation: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            operation,
            kind: ErrorKind::Rejected,
            code: Some("ValidationException".into()),
            message: message.into(),
        }
    }
}

/// Classification of a service error by code, then by HTTP status.
pub fn classify(code: Option<&str>, status: u16) -> ErrorKind {
    match code {
        Some(
            "ThrottlingException"
            | "Throttling"
            | "TooManyRequestsException"
            | "RequestLimitExceeded",
        ) => ErrorKind::Throttled,
        Some("ConflictException") => ErrorKind::Conflict,
        Some("DuplicatedStopRequestException") => ErrorKind::DuplicatedStop,
        Some("PipelineExecutionNotStoppableException") => ErrorKind::NotStoppable,
        Some("PipelineNotFoundException" | "ResourceNotFoundException") => {
            ErrorKind::PipelineNotFound
        }
        Some("PipelineExecutionNotFoundException") => ErrorKind::ExecutionNotFound,
        _ if status == 429 => ErrorKind::Throttled,
        _ if status >= 500 => ErrorKind::Server,
        _ => ErrorKind::Rejected,
    }
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_win_over_status_and_5xx_is_retryable() {
        assert_eq!(
            classify(Some("ThrottlingException"), 400),
            ErrorKind::Throttled
        );
        assert_eq!(
            classify(Some("ConflictException"), 409),
            ErrorKind::Conflict
        );
        assert_eq!(classify(Some("InternalFailure"), 500), ErrorKind::Server);
        assert_eq!(classify(None, 503), ErrorKind::Server);
        assert_eq!(
            classify(Some("ValidationException"), 400),
            ErrorKind::Rejected
        );
        assert_eq!(
            classify(Some("AccessDeniedException"), 400),
            ErrorKind::Rejected
        );
        assert!(ErrorKind::Server.is_retryable());
        assert!(!ErrorKind::DuplicatedStop.is_retryable());
        assert!(!ErrorKind::Rejected.is_retryable());
    }
}

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
    /// The identity may not do this: `AccessDeniedException`, `UnrecognizedClientException`,
    /// `MissingAuthenticationTokenException`, an invalid signature. Permanent; the error names
    /// the IAM action that is missing.
    Denied,
    /// `ExpiredTokenException`: the credentials expired. Retried once, after which the SDK's
    /// credentials provider has had its chance to refresh them; then permanent, like `Denied`.
    ExpiredToken,
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
                | ErrorKind::ExpiredToken
        )
    }

    /// Whether the request may have been carried out although its answer says nothing (lost,
    /// timed out, unreadable, or a 5xx): a retry can then meet the effect of the first attempt.
    pub fn outcome_unknown(self) -> bool {
        matches!(
            self,
            ErrorKind::Server | ErrorKind::Timeout | ErrorKind::Connection | ErrorKind::BadResponse
        )
    }

    /// Whether this is a permission or credential failure.
    pub fn is_permission(self) -> bool {
        matches!(self, ErrorKind::Denied | ErrorKind::ExpiredToken)
    }
}

/// The longest error message kept from a service answer, in characters: a service (or a proxy
/// in front of it) can answer with megabytes, which must not go into every log line and row.
pub const MAX_MESSAGE_CHARS: usize = 1_000;

/// `message`, cut to [`MAX_MESSAGE_CHARS`] characters with a note of how much was left out, and
/// with control characters (a line break that would fake a log line, an ANSI escape that
/// would repaint a terminal) written as `\u{..}` escapes: a service's words never act on the
/// log or the screen that shows them.
pub fn bound_message(message: &str) -> String {
    let (kept, cut) = match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        None => (message, None),
        Some((at, _)) => (&message[..at], Some(message.len() - at)),
    };
    let mut out: String = kept
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    if let Some(more) = cut {
        out.push_str(&format!("... ({more} more bytes not kept)"));
    }
    out
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
    /// Human message (at most [`MAX_MESSAGE_CHARS`] characters of what the service said).
    pub message: String,
}

impl ApiError {
    /// The IAM action of the operation, e.g. `codepipeline:StopPipelineExecution`.
    pub fn iam_action(&self) -> String {
        if self.code.as_deref() == Some(ASSUME_ROLE_DENIED) {
            return "sts:AssumeRole".into();
        }
        iam_action(self.operation)
    }

    /// One sentence for an operator: for a permission error, which IAM action is missing;
    /// otherwise the error itself.
    pub fn explain(&self) -> String {
        match self.kind {
            ErrorKind::Denied if self.code.as_deref() == Some(ASSUME_ROLE_DENIED) => format!(
                "{}: {ASSUME_ROLE_DENIED}: STS refused to let stopd assume the account's role, so {} was not called: \
                 allow sts:AssumeRole on the role to stopd's identity (config/iam-assume-role.json) and name \
                 stopd's identity, with the external id if any, in the role's trust policy \
                 (config/iam-trust-policy.json) ({})",
                self.operation, self.operation, self.message
            ),
            ErrorKind::Denied => format!(
                "{self}: stopd's identity may not call {}: grant {} (see config/iam-policy.json) or check its credentials",
                self.operation,
                self.iam_action()
            ),
            ErrorKind::ExpiredToken => format!(
                "{self}: stopd's credentials expired and were not renewed; {} could not be called",
                self.operation
            ),
            _ => self.to_string(),
        }
    }
}

/// The code of a call that was not sent because STS refused to let stopd assume the account's
/// role (its credentials could not be loaded).
pub const ASSUME_ROLE_DENIED: &str = "AssumeRoleDenied";

/// Whether an SDK error's text says the credentials could not be loaded because STS refused the
/// role (the SDK hands the provider's error over as a dispatch failure): permanent, unlike STS
/// being out of reach, which is retried like any connection failure.
fn assume_role_refused(text: &str) -> bool {
    text.contains("loading credentials")
        && [
            "AccessDenied",
            "not authorized to perform: sts:AssumeRole",
            "InvalidClientTokenId",
        ]
        .iter()
        .any(|needle| text.contains(needle))
}

/// The IAM action of an operation stopd calls (CodePipeline's, SQS's for the event queue,
/// SSM's GetCalendarState).
pub fn iam_action(operation: &str) -> String {
    match operation {
        // A batch is authorised as its single-message action.
        "DeleteMessageBatch" => "sqs:DeleteMessage".into(),
        "ReceiveMessage"
        | "DeleteMessage"
        | "GetQueueAttributes"
        | "ChangeMessageVisibility"
        | "GetQueueUrl" => format!("sqs:{operation}"),
        "GetCalendarState" => format!("ssm:{operation}"),
        _ => format!("codepipeline:{operation}"),
    }
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
            SdkError::DispatchFailure(_) if assume_role_refused(&chain(&err)) => (
                ErrorKind::Denied,
                Some(ASSUME_ROLE_DENIED.into()),
                chain(&err),
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
            message: bound_message(&message),
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
            | "RequestLimitExceeded"
            // SQS's (a 400): ReceiveMessage throttled, or its queue's KMS key.
            | "RequestThrottled"
            | "KmsThrottled",
        ) => ErrorKind::Throttled,
        Some("ConflictException") => ErrorKind::Conflict,
        Some("DuplicatedStopRequestException") => ErrorKind::DuplicatedStop,
        Some("PipelineExecutionNotStoppableException") => ErrorKind::NotStoppable,
        Some("PipelineNotFoundException" | "ResourceNotFoundException") => {
            ErrorKind::PipelineNotFound
        }
        Some("PipelineExecutionNotFoundException") => ErrorKind::ExecutionNotFound,
        Some(
            "AccessDeniedException"
            | "AccessDenied"
            | "UnrecognizedClientException"
            | "MissingAuthenticationTokenException"
            | "IncompleteSignatureException"
            | "InvalidSignatureException"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch",
        ) => ErrorKind::Denied,
        Some("ExpiredTokenException" | "ExpiredToken" | "RequestExpired") => {
            ErrorKind::ExpiredToken
        }
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
    fn a_refused_role_is_a_permission_error_naming_sts_assume_role() {
        let text = "dispatch failure: other: an error occurred while loading credentials: service error: unhandled error (AccessDenied): User: x is not authorized to perform: sts:AssumeRole on resource: r";
        assert!(assume_role_refused(text));
        // STS out of reach is a connection failure, retried.
        assert!(!assume_role_refused(
            "dispatch failure: other: an error occurred while loading credentials: dispatch failure: io: Connection refused"
        ));
        let e = ApiError {
            operation: "ListPipelines",
            kind: ErrorKind::Denied,
            code: Some(ASSUME_ROLE_DENIED.into()),
            message: "AccessDenied".into(),
        };
        assert_eq!(e.iam_action(), "sts:AssumeRole");
        assert!(e.explain().contains("trust policy"), "{}", e.explain());
    }

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
            ErrorKind::Denied
        );
        assert_eq!(
            classify(Some("MissingAuthenticationTokenException"), 403),
            ErrorKind::Denied
        );
        assert_eq!(
            classify(Some("ExpiredTokenException"), 400),
            ErrorKind::ExpiredToken
        );
        // SQS: a throttle is retried, a queue that does not exist is not.
        assert_eq!(
            classify(Some("RequestThrottled"), 400),
            ErrorKind::Throttled
        );
        assert_eq!(
            classify(Some("AWS.SimpleQueueService.NonExistentQueue"), 400),
            ErrorKind::Rejected
        );
        assert_eq!(
            classify(Some("QueueDoesNotExist"), 400),
            ErrorKind::Rejected
        );
        assert!(!ErrorKind::Denied.is_retryable());
        assert!(ErrorKind::Server.is_retryable());
        assert!(!ErrorKind::DuplicatedStop.is_retryable());
        assert!(!ErrorKind::Rejected.is_retryable());
    }

    #[test]
    fn service_messages_are_bounded_and_denials_name_the_iam_action() {
        let huge = "x".repeat(5_000_000);
        let m = bound_message(&huge);
        assert!(m.len() < 1_100, "{}", m.len());
        assert!(
            m.ends_with("(4999000 more bytes not kept)"),
            "{}",
            &m[990..]
        );
        assert_eq!(bound_message("short"), "short");
        assert_eq!(
            bound_message("denied\n2026-11-28 ERROR fake line \u{1b}[2J"),
            "denied\\u{a}2026-11-28 ERROR fake line \\u{1b}[2J"
        );
        let e = ApiError {
            operation: "StopPipelineExecution",
            kind: ErrorKind::Denied,
            code: Some("AccessDeniedException".into()),
            message: "User: arn:aws:sts::1:assumed-role/x is not authorized".into(),
        };
        assert!(
            e.explain()
                .contains("grant codepipeline:StopPipelineExecution"),
            "{}",
            e.explain()
        );
    }
}

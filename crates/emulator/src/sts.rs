//! STS AssumeRole, and which account's world serves a request.
//!
//! AssumeRole is the awsQuery protocol (STS API version 2011-06-15): a form-encoded `POST /`
//! with `Action=AssumeRole`, answered in XML. The SDK's `AssumeRoleProvider` speaks it when the
//! STS endpoint is pointed here. The role must be one [`Emulator::add_accounts`] defined, with
//! the `ExternalId` its trust policy requires, and not denied; the session credentials issued
//! (`ASIA...` access key ids) last the registry's session length, or `DurationSeconds`
//! (900 s to 12 h, default 1 h, as at AWS).
//!
//! A CodePipeline request signed with issued credentials is served by the world of the role's
//! account in the region its signature is scoped to ([`route`]); one with expired credentials
//! is answered `ExpiredTokenException`, as AWS does. Any other key is the ambient identity:
//! the root world serves it.

use std::time::Duration;

use crate::auth::{AuthHeaders, credential_scope};
use crate::error::ApiError;
use crate::world::{Emulator, Session, wall_ms};

/// What AssumeRole answers: HTTP status and XML body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsAnswer {
    /// HTTP status.
    pub status: u16,
    /// `text/xml` body.
    pub body: String,
}

/// Whether a request to `POST /` is an STS (awsQuery) request rather than CodePipeline's
/// (awsJson, which always names its operation in `X-Amz-Target`).
pub fn is_sts(target: Option<&str>, body: &[u8]) -> bool {
    target.is_none() && form(body).iter().any(|(k, _)| k == "Action")
}

/// Decodes `application/x-www-form-urlencoded`.
fn form(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn error(status: u16, code: &str, message: &str) -> StsAnswer {
    StsAnswer {
        status,
        body: format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
            xml_escape(message),
            uuid::Uuid::new_v4()
        ),
    }
}

/// 20 upper-case alphanumerics after `prefix`, from the root world's generator.
fn key_id(emulator: &Emulator, prefix: &str, len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut w = emulator.lock();
    let mut s = String::from(prefix);
    while s.len() < len {
        s.push(CHARS[w.rng.random_range(0..CHARS.len())] as char);
    }
    s
}

/// Answers an STS request (only AssumeRole is served).
pub fn handle(emulator: &Emulator, auth: AuthHeaders<'_>, body: &[u8]) -> StsAnswer {
    if let Err(e) = crate::auth::check_for(auth, "sts") {
        return error(e.status, e.code, &e.message);
    }
    let params = form(body);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match get("Action") {
        Some("AssumeRole") => {}
        other => {
            return error(
                400,
                "InvalidAction",
                &format!(
                    "Could not find operation {} for version 2011-06-15",
                    other.unwrap_or("")
                ),
            );
        }
    }
    emulator.accounts().assume_role_calls += 1;
    let Some(role_arn) = get("RoleArn") else {
        return error(
            400,
            "ValidationError",
            "1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null",
        );
    };
    let session_name = get("RoleSessionName").unwrap_or("");
    let name_ok = (2..=64).contains(&session_name.len())
        && session_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
    if !name_ok {
        return error(
            400,
            "ValidationError",
            &format!(
                "1 validation error detected: Value '{session_name}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
            ),
        );
    }
    let duration = match get("DurationSeconds").map(str::parse::<u64>) {
        None => 3_600,
        Some(Ok(d)) if (900..=43_200).contains(&d) => d,
        Some(_) => {
            return error(
                400,
                "ValidationError",
                "1 validation error detected: Value at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200",
            );
        }
    };
    let caller = credential_scope(&auth).map_or("unknown", |(k, _)| k);
    let denied = || {
        error(
            403,
            "AccessDenied",
            &format!(
                "User: arn:aws:iam::123456789012:user/{caller} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
            ),
        )
    };
    let (account, ttl) = {
        let reg = emulator.accounts();
        let Some(role) = reg.roles.get(role_arn) else {
            return denied();
        };
        let external_id_ok = role
            .external_id
            .as_deref()
            .is_none_or(|want| get("ExternalId") == Some(want));
        if role.denied || !external_id_ok {
            return denied();
        }
        (
            role.account.clone(),
            reg.session_ttl.unwrap_or(Duration::from_secs(duration)),
        )
    };
    let access_key = key_id(emulator, "ASIA", 20);
    let secret = key_id(emulator, "", 40);
    let token = key_id(emulator, "FQoGZXIvYXdzE", 120);
    let expires = wall_ms() + ttl.as_millis() as i64;
    emulator.accounts().sessions.insert(
        access_key.clone(),
        Session {
            account: account.clone(),
            expires_wall_ms: expires,
        },
    );
    let role_name = role_arn.rsplit('/').next().unwrap_or("role");
    StsAnswer {
        status: 200,
        body: format!(
            "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult><Credentials><AccessKeyId>{access_key}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey><SessionToken>{token}</SessionToken><Expiration>{}</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROA{}:{}</AssumedRoleId><Arn>arn:aws:sts::{account}:assumed-role/{}/{}</Arn></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></AssumeRoleResponse>",
            crate::clock::rfc3339(expires),
            &access_key[4..],
            xml_escape(session_name),
            xml_escape(role_name),
            xml_escape(session_name),
            uuid::Uuid::new_v4()
        ),
    }
}

/// The world that serves a CodePipeline request: the role's account in the signed region for
/// issued credentials, the root otherwise. Expired issued credentials are refused as AWS does.
pub fn route(emulator: &Emulator, auth: &AuthHeaders<'_>) -> Result<Emulator, ApiError> {
    let Some((key, region)) = credential_scope(auth) else {
        return Ok(emulator.clone());
    };
    let session = emulator.accounts().sessions.get(key).cloned();
    match session {
        None => Ok(emulator.clone()),
        Some(s) if s.expires_wall_ms <= wall_ms() => Err(ApiError::bad_request(
            "ExpiredTokenException",
            "The security token included in the request is expired",
        )),
        Some(s) => Ok(emulator.world_of(&s.account, region)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_like_the_sdk_encodes() {
        let f =
            form(b"Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fstopd&X=a+b&Y=%zz");
        assert_eq!(f[0], ("Action".into(), "AssumeRole".into()));
        assert_eq!(f[1].1, "arn:aws:iam::1:role/stopd");
        assert_eq!(f[2].1, "a b");
        assert_eq!(f[3].1, "%zz");
        assert!(is_sts(None, b"Action=AssumeRole&Version=2011-06-15"));
        assert!(!is_sts(Some("CodePipeline_20150709.ListPipelines"), b"{}"));
        assert!(!is_sts(None, b"{}"));
    }
}

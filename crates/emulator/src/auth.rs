//! The shape of a SigV4-signed request, checked as AWS checks it before it reads the body.
//!
//! The signature itself is not verified (the emulator knows no secret keys); what is checked is
//! what a client that forgot to sign, or signed for another service, would get wrong:
//! an `Authorization` header with the `AWS4-HMAC-SHA256` algorithm, a `Credential` of the form
//! `KEY/YYYYMMDD/REGION/codepipeline/aws4_request`, `SignedHeaders` that include `host`, a
//! hex `Signature`, and an `X-Amz-Date` (or `Date`) header. The answers are those of the AWS API
//! Reference's "Common Errors": `MissingAuthenticationTokenException` (HTTP 403) when there is no
//! `Authorization` header, `IncompleteSignatureException` (HTTP 400) when it is malformed.

use crate::error::ApiError;

/// The service name a credential must be scoped to.
pub const SERVICE: &str = "codepipeline";

/// The headers of a request that the check reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthHeaders<'a> {
    /// `Authorization`.
    pub authorization: Option<&'a str>,
    /// `X-Amz-Date`.
    pub amz_date: Option<&'a str>,
    /// `Date`.
    pub date: Option<&'a str>,
}

/// Checks the shape of the request's signature; `Err` is the answer AWS gives.
pub fn check(h: AuthHeaders<'_>) -> Result<(), ApiError> {
    check_for(h, SERVICE)
}

/// [`check`] for a request to `service` (`sts` for AssumeRole).
pub fn check_for(h: AuthHeaders<'_>, service: &str) -> Result<(), ApiError> {
    let Some(auth) = h.authorization else {
        return Err(ApiError {
            status: 403,
            code: "MissingAuthenticationTokenException",
            message: "Missing Authentication Token".into(),
        });
    };
    let incomplete =
        |message: String| ApiError::bad_request("IncompleteSignatureException", message);
    let (algorithm, rest) = auth.trim().split_once(' ').unwrap_or((auth.trim(), ""));
    if algorithm != "AWS4-HMAC-SHA256" {
        return Err(incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'. Authorization={auth}"
        )));
    }
    let param = |name: &str| {
        rest.split(',')
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let mut missing = Vec::new();
    for name in ["Credential", "Signature", "SignedHeaders"] {
        if param(name).is_none() {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    let date = h.amz_date.or(h.date);
    if date.is_none() {
        missing.push(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                .into(),
        );
    }
    if !missing.is_empty() {
        return Err(incomplete(format!(
            "{} Authorization={auth}",
            missing.join(" ")
        )));
    }
    let credential = param("Credential").unwrap_or_default();
    let scope: Vec<&str> = credential.split('/').collect();
    let well_formed = scope.len() == 5
        && !scope[0].is_empty()
        && scope[1].len() == 8
        && scope[1].bytes().all(|b| b.is_ascii_digit())
        && !scope[2].is_empty()
        && scope[4] == "aws4_request";
    if !well_formed {
        return Err(incomplete(format!(
            "Credential should be scoped to a valid region, not a malformed scope. Credential={credential}"
        )));
    }
    if scope[3] != service {
        return Err(incomplete(format!(
            "Credential should be scoped to correct service: '{service}'. Credential={credential}"
        )));
    }
    let signed = param("SignedHeaders").unwrap_or_default();
    if !signed.split(';').any(|s| s.eq_ignore_ascii_case("host")) {
        return Err(incomplete(format!(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization. SignedHeaders={signed}"
        )));
    }
    let signature = param("Signature").unwrap_or_default();
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(incomplete(format!(
            "The signature is not 64 hexadecimal characters. Signature={signature}"
        )));
    }
    if let Some(d) = h.amz_date
        && !(d.len() == 16
            && d.as_bytes()[8] == b'T'
            && d.ends_with('Z')
            && d.bytes()
                .enumerate()
                .all(|(i, b)| i == 8 || i == 15 || b.is_ascii_digit()))
    {
        return Err(incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{d}'. See http://en.wikipedia.org/wiki/ISO_8601"
        )));
    }
    Ok(())
}

/// The access key id and region of a request's `Credential` scope, if it has one.
pub fn credential_scope<'a>(h: &AuthHeaders<'a>) -> Option<(&'a str, &'a str)> {
    let auth = h.authorization?;
    let credential = auth
        .split([' ', ','])
        .find_map(|kv| kv.trim().strip_prefix("Credential="))?;
    let mut parts = credential.split('/');
    let key = parts.next()?;
    let _date = parts.next()?;
    let region = parts.next()?;
    Some((key, region))
}

/// A syntactically valid `Authorization` header for tests and raw clients (not a real signature).
pub fn example_authorization(operation_date: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{operation_date}/us-east-1/{SERVICE}/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={}",
        "0".repeat(64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> AuthHeaders<'_> {
        AuthHeaders {
            authorization: Some(auth),
            amz_date: Some("20261128T090000Z"),
            date: None,
        }
    }

    #[test]
    fn a_well_formed_header_passes() {
        check(headers(&example_authorization("20261128"))).unwrap();
    }

    #[test]
    fn each_malformation_is_an_incomplete_signature() {
        let good = example_authorization("20261128");
        let cases = [
            good.replace("AWS4-HMAC-SHA256", "AWS3"),
            good.replace("Signature=", "Sig="),
            good.replace("/codepipeline/", "/s3/"),
            good.replace("/aws4_request", "/aws3_request"),
            good.replace("content-type;host;", "content-type;"),
            good.replace(&"0".repeat(64), "abc"),
        ];
        for bad in &cases {
            let e = check(headers(bad)).unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (400, "IncompleteSignatureException"),
                "{bad}"
            );
        }
        let no_date = AuthHeaders {
            amz_date: None,
            ..headers(&good)
        };
        assert!(check(no_date).unwrap_err().message.contains("X-Amz-Date"));
        let e = check(AuthHeaders::default()).unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (403, "MissingAuthenticationTokenException")
        );
    }
}

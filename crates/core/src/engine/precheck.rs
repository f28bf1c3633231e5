//! What the service model's patterns accept, checked before anything is sent: a request that
//! could never be valid costs no call (and no retry).

/// Whether a name can be a pipeline name (`[A-Za-z0-9.@\-_]{1,100}`).
pub fn valid_pipeline_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'@' | b'-' | b'_'))
}

/// Whether an id is a lower-case UUID, as execution ids are.
pub fn valid_execution_id(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// The longest prefix with at most `max` characters (never splits a character).
pub fn cut_chars(s: &str, max: usize) -> &str {
    s.char_indices().nth(max).map_or(s, |(i, _)| &s[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prechecks_follow_the_model_patterns() {
        assert!(valid_pipeline_name("prod-web_1.0@x"));
        assert!(!valid_pipeline_name(""));
        assert!(!valid_pipeline_name("bad name"));
        assert!(!valid_pipeline_name(&"a".repeat(101)));
        assert!(valid_execution_id("3f2a0c1e-0000-4000-8000-00000000abcd"));
        assert!(!valid_execution_id("3F2A0C1E-0000-4000-8000-00000000ABCD"));
        assert!(!valid_execution_id("3f2a0c1e00000-4000-8000-00000000abcd"));
    }

    #[test]
    fn reason_cut_on_a_character_boundary() {
        let s = "é".repeat(250);
        assert_eq!(cut_chars(&s, 200).chars().count(), 200);
        assert_eq!(cut_chars("short", 200), "short");
    }
}

//! Reason templates: `"Weekend change freeze until {until}"`.
//!
//! Placeholders: `{rule}`, `{kind}` (freeze|timeout|manual), `{pipeline}`, `{execution}`,
//! `{until}` (window end, RFC 3339 UTC; empty for timeouts), `{max_duration}` (empty for
//! freezes), `{elapsed}`. `{{` and `}}` are literal braces. A rendered reason is cut to the
//! API's 200 characters (characters, not bytes).

/// The longest reason StopPipelineExecution accepts, in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 7] = [
    "rule",
    "kind",
    "pipeline",
    "execution",
    "until",
    "max_duration",
    "elapsed",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(usize),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{name}` with a name not in [`PLACEHOLDERS`].
    #[error(
        "unknown placeholder {{{0}}}; known: {{rule}} {{kind}} {{pipeline}} {{execution}} {{until}} {{max_duration}} {{elapsed}}"
    )]
    UnknownPlaceholder(String),
    /// A `{` without its `}` or a lone `}`.
    #[error("unbalanced brace at character {0} (write {{{{ or }}}} for a literal brace)")]
    Unbalanced(usize),
}

/// Values for the placeholders, in [`PLACEHOLDERS`] order.
#[derive(Debug, Clone, Default)]
pub struct Values<'a> {
    /// `{rule}`.
    pub rule: &'a str,
    /// `{kind}`.
    pub kind: &'a str,
    /// `{pipeline}`.
    pub pipeline: &'a str,
    /// `{execution}`.
    pub execution: &'a str,
    /// `{until}`.
    pub until: &'a str,
    /// `{max_duration}`.
    pub max_duration: &'a str,
    /// `{elapsed}`.
    pub elapsed: &'a str,
}

impl Template {
    /// Parses a template, refusing unknown placeholders and unbalanced braces.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut buf = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    buf.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    buf.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((_, ch)) => name.push(ch),
                            None => return Err(TemplateError::Unbalanced(i)),
                        }
                    }
                    let idx = PLACEHOLDERS
                        .iter()
                        .position(|p| *p == name)
                        .ok_or(TemplateError::UnknownPlaceholder(name))?;
                    if !buf.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut buf)));
                    }
                    pieces.push(Piece::Var(idx));
                }
                '}' => return Err(TemplateError::Unbalanced(i)),
                c => buf.push(c),
            }
        }
        if !buf.is_empty() {
            pieces.push(Piece::Text(buf));
        }
        Ok(Template { pieces })
    }

    /// Whether the template uses this placeholder.
    pub fn uses(&self, placeholder: &str) -> bool {
        PLACEHOLDERS
            .iter()
            .position(|p| *p == placeholder)
            .is_some_and(|i| self.pieces.contains(&Piece::Var(i)))
    }

    /// Renders with these values and cuts the result to [`MAX_REASON_CHARS`] characters.
    pub fn render(&self, v: &Values<'_>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(i) => out.push_str(match i {
                    0 => v.rule,
                    1 => v.kind,
                    2 => v.pipeline,
                    3 => v.execution,
                    4 => v.until,
                    5 => v.max_duration,
                    _ => v.elapsed,
                }),
            }
        }
        if out.len() > MAX_REASON_CHARS {
            // Only a string of more than 200 bytes can have more than 200 characters.
            let keep = truncate_chars(&out, MAX_REASON_CHARS).len();
            out.truncate(keep);
        }
        out
    }
}

/// The longest prefix of `s` with at most `max` characters (never splits a character).
pub fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders_and_escapes() {
        let t = Template::parse("{{{kind}}} {rule}: {pipeline}/{execution} until {until}").unwrap();
        let s = t.render(&Values {
            rule: "weekend",
            kind: "freeze",
            pipeline: "prod-web",
            execution: "abc",
            until: "2026-11-30T07:00:00Z",
            ..Values::default()
        });
        assert_eq!(
            s,
            "{freeze} weekend: prod-web/abc until 2026-11-30T07:00:00Z"
        );
    }

    #[test]
    fn unknown_placeholder_is_named() {
        assert_eq!(
            Template::parse("stop {reasn}"),
            Err(TemplateError::UnknownPlaceholder("reasn".into()))
        );
        assert_eq!(
            Template::parse("a {rule"),
            Err(TemplateError::Unbalanced(2))
        );
        assert_eq!(Template::parse("a } b"), Err(TemplateError::Unbalanced(2)));
    }

    #[test]
    fn reason_is_cut_to_200_characters_on_a_character_boundary() {
        let t = Template::parse(&"é".repeat(150)).unwrap();
        let s = t.render(&Values {
            rule: &"ü".repeat(100),
            ..Values::default()
        });
        let t2 = Template::parse(&format!("{}{{rule}}", "é".repeat(150))).unwrap();
        let s2 = t2.render(&Values {
            rule: &"ü".repeat(100),
            ..Values::default()
        });
        assert_eq!(s.chars().count(), 150);
        assert_eq!(s2.chars().count(), 200);
        assert!(s2.ends_with('ü'));
    }
}

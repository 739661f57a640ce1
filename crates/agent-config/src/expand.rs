//! `${VAR}` expansion inside YAML string values.
//!
//! The exact rule (also in the configuration reference):
//!
//! * `${NAME}` is replaced by the value of environment variable `NAME`; an unset variable is an
//!   error naming it. A variable set to the empty string expands to the empty string.
//! * `${NAME:-default}` is replaced by `NAME` when it is set and non-empty, otherwise by `default`
//!   (shell semantics). `default` is taken literally up to the first `}`; it is not expanded again.
//! * `$${` is the escape for a literal `${` (so `$${HOME}` stays `${HOME}`).
//! * Any other `$` is literal: a lone `$`, `$$` not followed by `{`, `$NAME` without braces. Passwords
//!   such as `pa$$word` or `a$b` need no escaping.
//! * `NAME` is `[A-Za-z_][A-Za-z0-9_]*`; `${` followed by anything else, or without a closing `}`,
//!   is an error (it is almost always a typo that would otherwise send a wrong secret).
//!
//! Expansion happens on string values only, after YAML parsing: never in keys, never in the raw
//! text, so a value cannot inject YAML structure.

/// Why a string could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    /// `${NAME}` with `NAME` unset.
    Unset(String),
    /// `${` not followed by a valid name and `}` / `:-default}`.
    Malformed(String),
}

impl std::fmt::Display for ExpandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpandError::Unset(name) => write!(
                f,
                "environment variable {name} is not set (referenced as ${{{name}}}; use ${{{name}:-default}} for a fallback)"
            ),
            ExpandError::Malformed(text) => write!(
                f,
                "malformed variable reference '{text}': expected ${{NAME}} or ${{NAME:-default}} (write $${{ for a literal ${{)"
            ),
        }
    }
}

/// Whether `text` contains anything expansion would change.
pub fn has_reference(text: &str) -> bool {
    text.contains("${")
}

/// Expand `text` with `lookup` as the environment.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some(close) = tail.find('}') else {
                return Err(ExpandError::Malformed(after.to_owned()));
            };
            let inner = &tail[..close];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !is_valid_name(name) {
                return Err(ExpandError::Malformed(format!("${{{inner}}}")));
            }
            let value = lookup(name);
            match (value, default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(ExpandError::Unset(name.to_owned())),
            }
            rest = &tail[close + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("abc".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn ex(text: &str) -> Result<String, ExpandError> {
        expand(text, &env)
    }

    #[test]
    fn expands_set_variables() {
        assert_eq!(ex("${TOKEN}"), Ok("abc".to_owned()));
        assert_eq!(ex("Token ${TOKEN}!"), Ok("Token abc!".to_owned()));
        assert_eq!(ex("${TOKEN}${TOKEN}"), Ok("abcabc".to_owned()));
        assert_eq!(ex("${EMPTY}"), Ok(String::new()));
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        assert_eq!(ex("${NOPE:-x y}"), Ok("x y".to_owned()));
        assert_eq!(ex("${EMPTY:-d}"), Ok("d".to_owned()));
        assert_eq!(ex("${TOKEN:-d}"), Ok("abc".to_owned()));
        assert_eq!(ex("${NOPE:-}"), Ok(String::new()));
    }

    #[test]
    fn unset_variable_is_named() {
        assert_eq!(
            ex("a ${NOPE} b"),
            Err(ExpandError::Unset("NOPE".to_owned()))
        );
        let msg = ExpandError::Unset("NOPE".to_owned()).to_string();
        assert!(msg.contains("NOPE is not set"), "{msg}");
    }

    #[test]
    fn dollars_without_braces_are_literal() {
        assert_eq!(ex("pa$$word"), Ok("pa$$word".to_owned()));
        assert_eq!(ex("a$b $"), Ok("a$b $".to_owned()));
        assert_eq!(ex("$TOKEN"), Ok("$TOKEN".to_owned()));
        assert_eq!(ex("$$"), Ok("$$".to_owned()));
    }

    #[test]
    fn double_dollar_brace_escapes() {
        assert_eq!(ex("$${TOKEN}"), Ok("${TOKEN}".to_owned()));
        assert_eq!(ex("x$${NOPE"), Ok("x${NOPE".to_owned()));
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(matches!(ex("${TOKEN"), Err(ExpandError::Malformed(_))));
        assert!(matches!(ex("${}"), Err(ExpandError::Malformed(_))));
        assert!(matches!(ex("${1A}"), Err(ExpandError::Malformed(_))));
        assert!(matches!(ex("${A B}"), Err(ExpandError::Malformed(_))));
    }

    #[test]
    fn non_ascii_text_survives() {
        assert_eq!(ex("é ${TOKEN} ü $"), Ok("é abc ü $".to_owned()));
    }
}

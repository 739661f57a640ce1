//! Refuse names that could change the meaning of a command line or a path before anything runs.
//!
//! sacctmgr parses `key=value` pairs and comma-separated lists inside single arguments, so a
//! resource called `x,parent=root` or a user called `-i` would turn into something else. We never use
//! a shell, but the tools' own parsers are enough to inject. Only ASCII letters, digits, `_`, `-`,
//! `.` and `@` pass (see [`agent_config::names`], the one rule).

use crate::error::BackendError;

/// Check a name that ends up as one argument of a site command or as a path component.
/// `what` names the thing for the error message (`"account name"`, `"username"`, ...).
/// The rule itself is [`agent_config::names::check_name`], shared with config validation.
pub fn validate_site_name(what: &'static str, value: &str) -> Result<(), BackendError> {
    agent_config::names::check_name(value).map_err(|reason| refused(what, value, reason))
}

/// Like [`validate_site_name`] for values that are never paths and may contain `/`
/// (SLURM TRES names such as `gres/gpu`).
pub fn validate_site_token(what: &'static str, value: &str) -> Result<(), BackendError> {
    agent_config::names::check_token(value).map_err(|reason| refused(what, value, reason))
}

/// [`validate_site_name`] plus Kubernetes' rule for a namespace name (a DNS-1123 label: 1 to 63
/// lower-case letters, digits and `-`, starting and ending with a letter or digit). For every
/// backend that names a Kubernetes namespace or project after a resource.
pub fn validate_dns_label(what: &'static str, value: &str) -> Result<(), BackendError> {
    validate_site_name(what, value)?;
    let reason = if value.is_empty() || value.len() > 63 {
        "a Kubernetes name has 1 to 63 characters"
    } else if !value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        "a Kubernetes name holds only lower-case letters, digits and '-'"
    } else if value.starts_with('-') || value.ends_with('-') {
        "a Kubernetes name starts and ends with a letter or digit"
    } else {
        return Ok(());
    };
    Err(refused(what, value, reason.into()))
}

fn refused(what: &'static str, value: &str, reason: String) -> BackendError {
    BackendError::InvalidName {
        what,
        // Escaped: control and direction-changing characters must not act on the log line.
        value: value.escape_default().to_string(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused() {
        for bad in [
            "x,parent=root",
            "a b",
            "-i",
            "",
            "a\tb",
            "a\nb",
            "x'y",
            "x\"y",
            "a=b",
            "../etc",
            ".",
            "..",
            "a\u{7}b",
            "a\u{85}b",
            "$(id)",
            "école",
            "a#b",
            "a:b",
            "abc\u{202e}txt",
            "ad\u{200b}min",
        ] {
            let err = validate_site_name("account name", bad).expect_err(bad);
            assert!(
                matches!(err, BackendError::InvalidName { .. }),
                "{bad}: {err}"
            );
            assert!(!err.is_transient());
        }
    }

    #[test]
    fn ordinary_names_pass() {
        for good in [
            "hpc_proj-1",
            "alloc_a1b2c3",
            "alice",
            "user.name",
            "j_doe42",
            "jane@example.org",
        ] {
            validate_site_name("account name", good).expect(good);
        }
    }

    #[test]
    fn tokens_may_contain_a_slash_but_nothing_else_new() {
        validate_site_token("TRES name", "gres/gpu").expect("gres/gpu is a TRES");
        validate_site_name("account name", "gres/gpu").expect_err("but not a path component");
        validate_site_token("TRES name", "gres/gpu,cpu=1").expect_err("lists stay refused");
    }

    #[test]
    fn message_names_the_value_and_the_character() {
        let msg = validate_site_name("username", "a b")
            .expect_err("space")
            .to_string();
        assert!(
            msg.contains("username") && msg.contains("'a b'") && msg.contains("U+0020 (SPACE)"),
            "{msg}"
        );
        let msg = validate_site_name("account name", "abc\u{202e}txt")
            .expect_err("bidi")
            .to_string();
        assert!(
            msg.contains("character U+202E (RIGHT-TO-LEFT OVERRIDE)"),
            "{msg}"
        );
        // The value is escaped: the override never reaches a log line as itself.
        assert!(!msg.contains('\u{202e}'), "{msg:?}");
        let msg = validate_site_name("account name", "x;y")
            .expect_err("semicolon")
            .to_string();
        assert!(msg.contains("character U+003B (';')"), "{msg}");
    }
}

//! Refuse names that could change the meaning of a command line or a path before anything runs.
//!
//! sacctmgr parses `key=value` pairs and comma-separated lists inside single arguments, so a
//! resource called `x,parent=root` or a user called `-i` would turn into something else. We never use
//! a shell, but the tools' own parsers are enough to inject.

use crate::error::BackendError;

/// Check a name that ends up as one argument of a site command or as a path component.
/// `what` names the thing for the error message (`"account name"`, `"username"`, ...).
pub fn validate_site_name(what: &'static str, value: &str) -> Result<(), BackendError> {
    validate(what, value, false)
}

/// Like [`validate_site_name`] for values that are never paths and may contain `/`
/// (SLURM TRES names such as `gres/gpu`).
pub fn validate_site_token(what: &'static str, value: &str) -> Result<(), BackendError> {
    validate(what, value, true)
}

fn validate(what: &'static str, value: &str, slash_allowed: bool) -> Result<(), BackendError> {
    let refuse = |reason: &'static str| {
        Err(BackendError::InvalidName {
            what,
            value: value.escape_debug().to_string(),
            reason,
        })
    };
    if value.is_empty() {
        return refuse("it is empty");
    }
    if value.starts_with('-') {
        return refuse("it starts with '-' and would be read as an option");
    }
    if !slash_allowed && (value == "." || value == ".." || value.contains('/')) {
        return refuse("it would change a file path");
    }
    for c in value.chars() {
        match c {
            '=' | ',' => {
                return refuse("'=' and ',' are list and assignment syntax for site tools");
            }
            '\'' | '"' | '`' | '\\' | '$' | ';' | '|' | '&' | '<' | '>' | '(' | ')' | '*' | '?'
            | '[' | ']' | '{' | '}' => {
                return refuse("quotes and shell metacharacters are not allowed");
            }
            c if c.is_whitespace() => return refuse("whitespace is not allowed"),
            c if c.is_control() => return refuse("control characters are not allowed"),
            _ => {}
        }
    }
    Ok(())
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
            "a\u{7}b",
            "a\u{85}b",
            "$(id)",
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
            "école",
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
    fn message_names_the_value_and_reason() {
        let msg = validate_site_name("username", "a b")
            .expect_err("space")
            .to_string();
        assert!(
            msg.contains("username") && msg.contains("'a b'") && msg.contains("whitespace"),
            "{msg}"
        );
    }
}

//! The one rule for names that reach a site: account, project and user names, QoS names, and the
//! prefixes they start with. `backend_api::names` applies it before any site command runs; the
//! loader applies it to the configured prefixes and account names, so a hostile value is refused
//! by `validate-config` rather than when the first order arrives.
//!
//! It is an allow-list: ASCII letters, digits, `_`, `-`, `.` and `@` (and `/` in the token
//! variant, for SLURM TRES names such as `gres/gpu`). Not empty, no leading `-` (it would be read
//! as an option), not `.` or `..` (they would change a path). Everything else is refused with the
//! offending character named by its code point, so invisible characters (U+200B, U+202E) are
//! visible in the message.

/// Check a name that ends up as one argument of a site command or as a path component.
/// `Err` carries the reason, for a message such as `refused username 'a b': <reason>`.
pub fn check_name(value: &str) -> Result<(), String> {
    check(value, false)
}

/// Like [`check_name`] for values that are never paths and may contain `/` (SLURM TRES names
/// such as `gres/gpu`).
pub fn check_token(value: &str) -> Result<(), String> {
    check(value, true)
}

/// A prefix is the start of a name: empty, or a valid name itself.
pub fn check_prefix(value: &str) -> Result<(), String> {
    if value.is_empty() {
        Ok(())
    } else {
        check_name(value)
    }
}

/// Whether `c` may appear in a name (`/` only when `slash_allowed`).
pub fn is_name_char(c: char, slash_allowed: bool) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@') || (slash_allowed && c == '/')
}

fn check(value: &str, slash_allowed: bool) -> Result<(), String> {
    if value.is_empty() {
        return Err("it is empty".to_owned());
    }
    if let Some(c) = value.chars().find(|c| !is_name_char(*c, slash_allowed)) {
        let allowed = if slash_allowed {
            "ASCII letters, digits, '_', '-', '.', '@' and '/'"
        } else {
            "ASCII letters, digits, '_', '-', '.' and '@'"
        };
        return Err(format!(
            "{} is not allowed (only {allowed})",
            describe_char(c)
        ));
    }
    if value.starts_with('-') {
        return Err("it starts with '-' and would be read as an option".to_owned());
    }
    if value == "." || value == ".." {
        return Err("'.' and '..' would change a file path".to_owned());
    }
    Ok(())
}

/// `character U+003B (';')` for printable ASCII, `character U+202E (RIGHT-TO-LEFT OVERRIDE)` for
/// the invisible and direction-changing characters people paste by accident, `character U+00E9`
/// otherwise. The character itself is shown only when it is printable ASCII, so the message can
/// never reorder or hide the text around it.
pub fn describe_char(c: char) -> String {
    let code = u32::from(c);
    if c.is_ascii_graphic() {
        return format!("character U+{code:04X} ('{c}')");
    }
    match char_name(c) {
        Some(name) => format!("character U+{code:04X} ({name})"),
        None => format!("character U+{code:04X}"),
    }
}

fn char_name(c: char) -> Option<&'static str> {
    Some(match c {
        '\0' => "NULL",
        '\t' => "CHARACTER TABULATION",
        '\n' => "LINE FEED",
        '\r' => "CARRIAGE RETURN",
        '\u{1b}' => "ESCAPE",
        ' ' => "SPACE",
        '\u{7f}' => "DELETE",
        '\u{85}' => "NEXT LINE",
        '\u{a0}' => "NO-BREAK SPACE",
        '\u{ad}' => "SOFT HYPHEN",
        '\u{200b}' => "ZERO WIDTH SPACE",
        '\u{200c}' => "ZERO WIDTH NON-JOINER",
        '\u{200d}' => "ZERO WIDTH JOINER",
        '\u{200e}' => "LEFT-TO-RIGHT MARK",
        '\u{200f}' => "RIGHT-TO-LEFT MARK",
        '\u{2010}' => "HYPHEN",
        '\u{2011}' => "NON-BREAKING HYPHEN",
        '\u{2013}' => "EN DASH",
        '\u{2014}' => "EM DASH",
        '\u{2028}' => "LINE SEPARATOR",
        '\u{2029}' => "PARAGRAPH SEPARATOR",
        '\u{202a}' => "LEFT-TO-RIGHT EMBEDDING",
        '\u{202b}' => "RIGHT-TO-LEFT EMBEDDING",
        '\u{202c}' => "POP DIRECTIONAL FORMATTING",
        '\u{202d}' => "LEFT-TO-RIGHT OVERRIDE",
        '\u{202e}' => "RIGHT-TO-LEFT OVERRIDE",
        '\u{2060}' => "WORD JOINER",
        '\u{2066}' => "LEFT-TO-RIGHT ISOLATE",
        '\u{2067}' => "RIGHT-TO-LEFT ISOLATE",
        '\u{2068}' => "FIRST STRONG ISOLATE",
        '\u{2069}' => "POP DIRECTIONAL ISOLATE",
        '\u{2212}' => "MINUS SIGN",
        '\u{3000}' => "IDEOGRAPHIC SPACE",
        '\u{feff}' => "ZERO WIDTH NO-BREAK SPACE",
        '\u{fffd}' => "REPLACEMENT CHARACTER",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for good in [
            "hpc_proj-1",
            "alloc_a1b2c3",
            "alice",
            "user.name",
            "j_doe42",
            "jane@example.org",
            "a",
            "...a",
            "a-",
        ] {
            check_name(good).expect(good);
        }
    }

    #[test]
    fn everything_outside_the_allow_list_is_refused_by_code_point() {
        for (bad, shown) in [
            ("école", "U+00E9"),
            ("a#b", "U+0023 ('#')"),
            ("a:b", "U+003A (':')"),
            ("x;rm -rf /", "U+003B (';')"),
            ("x,parent=root", "U+002C (',')"),
            ("a=b", "U+003D ('=')"),
            ("a b", "U+0020 (SPACE)"),
            ("a\tb", "U+0009 (CHARACTER TABULATION)"),
            ("a\nb", "U+000A (LINE FEED)"),
            ("x'y", "U+0027 (''')"),
            ("x\"y", "U+0022 ('\"')"),
            ("$(id)", "U+0024 ('$')"),
            ("a\u{7}b", "U+0007"),
            ("a\u{85}b", "U+0085 (NEXT LINE)"),
            ("abc\u{202e}gpj.exe", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
            ("ad\u{200b}min", "U+200B (ZERO WIDTH SPACE)"),
            ("a+b", "U+002B ('+')"),
            ("a%2e", "U+0025 ('%')"),
            ("../etc", "U+002F ('/')"),
        ] {
            let reason = check_name(bad).expect_err(bad);
            assert!(
                reason.contains(&format!("character {shown} is not allowed")),
                "{bad:?}: {reason}"
            );
        }
    }

    #[test]
    fn structural_refusals() {
        assert!(check_name("").expect_err("empty").contains("empty"));
        assert!(check_name("-i").expect_err("option").contains("option"));
        assert!(check_name(".").expect_err("dot").contains("path"));
        assert!(check_name("..").expect_err("dotdot").contains("path"));
    }

    #[test]
    fn tokens_may_contain_a_slash_but_nothing_else_new() {
        check_token("gres/gpu").expect("gres/gpu is a TRES");
        check_name("gres/gpu").expect_err("but not a path component");
        check_token("gres/gpu,cpu=1").expect_err("lists stay refused");
        check_token("-gres/gpu").expect_err("no leading '-'");
    }

    #[test]
    fn a_prefix_may_be_empty_and_is_otherwise_a_name() {
        check_prefix("").expect("empty prefix");
        check_prefix("hpc_").expect("ordinary prefix");
        check_prefix("waldur-").expect("ordinary prefix");
        assert!(
            check_prefix("x;rm -rf /")
                .expect_err("metacharacters")
                .contains("U+003B (';')")
        );
        assert!(check_prefix("-i").expect_err("option").contains("option"));
        assert!(check_prefix("a/").is_err());
    }

    #[test]
    fn non_ascii_characters_are_never_echoed() {
        let reason = check_name("a\u{202e}b").expect_err("bidi");
        assert!(!reason.contains('\u{202e}'), "{reason:?}");
        assert_eq!(describe_char('é'), "character U+00E9");
        assert_eq!(describe_char('\u{1F600}'), "character U+1F600");
    }
}

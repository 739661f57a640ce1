//! The one scrubber: every configured secret string, replaced by `***` wherever it would be
//! printed — log lines (the binary's log writer), `diagnostics` output, and the error text the
//! agent writes to Waldur (order and resource error messages).

use std::sync::{Arc, RwLock};

/// The set of strings never to print. Shared, so secrets learnt later can be added.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.secrets.read().map(|s| s.len()).unwrap_or(0);
        write!(f, "Redactor({n} secrets)")
    }
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let r = Redactor::default();
        r.add(secrets);
        r
    }

    pub fn add<'a>(&self, secrets: impl IntoIterator<Item = &'a str>) {
        let Ok(mut list) = self.secrets.write() else {
            return;
        };
        for s in secrets {
            let s = s.trim();
            if s.is_empty() || list.iter().any(|x| x == s) {
                continue;
            }
            list.push(s.to_owned());
            // Also the JSON-escaped spelling, which is what appears inside a JSON log line.
            let escaped = serde_json::to_string(s).unwrap_or_default();
            let escaped = escaped.trim_matches('"');
            if escaped != s && !escaped.is_empty() {
                list.push(escaped.to_owned());
            }
        }
        // Longest first, so a secret containing another is replaced whole.
        list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// `text` with every secret replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let Ok(list) = self.secrets.read() else {
            // A poisoned lock must not leak: print nothing rather than a secret.
            return "*** (redaction unavailable)".to_owned();
        };
        let mut out = text.to_owned();
        for s in list.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configured_secret_and_its_json_spelling_is_replaced() {
        let r = Redactor::new(["s3cr3t", "pa\"ss", ""]);
        assert_eq!(r.scrub("token s3cr3t!"), "token ***!");
        assert_eq!(r.scrub(r#"{"p":"pa\"ss"}"#), r#"{"p":"***"}"#);
        assert_eq!(r.scrub("nothing here"), "nothing here");
        r.add(["later"]);
        assert_eq!(r.scrub("later s3cr3t"), "*** ***");
    }
}

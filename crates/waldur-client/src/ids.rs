//! Waldur UUIDs: accepted dashed or hex, always rendered as 32 lower-case hex digits (what
//! Mastermind emits and what queue names are built from).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Waldur object UUID, normalised to 32 lower-case hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaldurUuid(String);

/// The text is not a UUID in dashed or hex form.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a UUID (32 hex digits, dashes allowed)")]
pub struct InvalidUuid(pub String);

impl WaldurUuid {
    pub fn parse(text: &str) -> Result<Self, InvalidUuid> {
        let trimmed = text.trim();
        let parsed = uuid::Uuid::try_parse(trimmed).map_err(|_| InvalidUuid(trimmed.to_owned()))?;
        Ok(WaldurUuid(parsed.simple().to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Random UUID (tests, simulators).
    pub fn new_v4() -> Self {
        WaldurUuid(uuid::Uuid::new_v4().simple().to_string())
    }
}

/// Normalise dashed or hex UUID text to 32 lower-case hex; text that is not a UUID is returned
/// trimmed and lower-cased so comparisons still work on odd server values.
pub fn normalize_uuid(text: &str) -> String {
    WaldurUuid::parse(text)
        .map(|u| u.0)
        .unwrap_or_else(|_| text.trim().to_ascii_lowercase())
}

impl fmt::Display for WaldurUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WaldurUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WaldurUuid({})", self.0)
    }
}

impl std::str::FromStr for WaldurUuid {
    type Err = InvalidUuid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WaldurUuid::parse(s)
    }
}

impl AsRef<str> for WaldurUuid {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for WaldurUuid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for WaldurUuid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        WaldurUuid::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The last path segment of a Waldur hyperlink (`https://h/api/x/<uuid>/` → `<uuid>` hex).
pub fn uuid_from_url(link: &str) -> Option<String> {
    link.trim_end_matches('/')
        .rsplit('/')
        .next()
        .and_then(|segment| WaldurUuid::parse(segment).ok())
        .map(|u| u.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashed_and_hex_normalise_to_the_same_hex() {
        let dashed = WaldurUuid::parse("0D7D5D1B-0F7C-4B0F-8A0B-3C8C3B8C7B7C").expect("dashed");
        let hex = WaldurUuid::parse("0d7d5d1b0f7c4b0f8a0b3c8c3b8c7b7c").expect("hex");
        assert_eq!(dashed, hex);
        assert_eq!(dashed.as_str(), "0d7d5d1b0f7c4b0f8a0b3c8c3b8c7b7c");
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(WaldurUuid::parse("not-a-uuid").is_err());
        assert!(WaldurUuid::parse("").is_err());
        assert_eq!(normalize_uuid(" ABC "), "abc");
    }

    #[test]
    fn uuid_is_read_from_a_hyperlink() {
        assert_eq!(
            uuid_from_url(
                "https://w/api/marketplace-component-usages/0d7d5d1b-0f7c-4b0f-8a0b-3c8c3b8c7b7c/"
            )
            .as_deref(),
            Some("0d7d5d1b0f7c4b0f8a0b3c8c3b8c7b7c")
        );
        assert_eq!(uuid_from_url("https://w/api/x/"), None);
    }

    #[test]
    fn serde_accepts_dashed_and_emits_hex() {
        let parsed: WaldurUuid =
            serde_json::from_str("\"0d7d5d1b-0f7c-4b0f-8a0b-3c8c3b8c7b7c\"").expect("json");
        assert_eq!(
            serde_json::to_string(&parsed).expect("json"),
            "\"0d7d5d1b0f7c4b0f8a0b3c8c3b8c7b7c\""
        );
    }
}

//! `healthz`: liveness = the heartbeat file is younger than `--max-age`; readiness = Waldur answers
//! `GET users/me/` for at least one offering (upstream: the first success wins).

use std::path::Path;
use std::time::{Duration, SystemTime};

use agent_config::{AgentConfig, OfferingConfig};

/// Why liveness failed, or the heartbeat's age.
pub fn check_liveness(path: &Path, max_age: Duration) -> Result<Duration, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("heartbeat file {} is not readable: {e}", path.display()))?;
    let modified = meta
        .modified()
        .map_err(|e| format!("heartbeat file {} has no mtime: {e}", path.display()))?;
    // A clock step backwards makes the file look "from the future": count that as fresh.
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or(Duration::ZERO);
    if age > max_age {
        Err(format!(
            "heartbeat file {} is {}s old (max {}s)",
            path.display(),
            age.as_secs(),
            max_age.as_secs()
        ))
    } else {
        Ok(age)
    }
}

/// How long one readiness request may take by default (upstream 1.0.8: 5 s, below the probe's
/// own timeout, so a stalled Waldur reads as "not ready" instead of a killed probe).
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET <waldur_api_url>users/me/?field=uuid` through the agent's own Waldur client (auth, TLS,
/// proxy, response cap, errors without credentials or URL user info); the user's UUID on success.
pub async fn check_offering(
    config: &AgentConfig,
    offering: &OfferingConfig,
    user_agent: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let mut options =
        crate::modes::client_options(config, offering, "healthz").map_err(anyhow::Error::msg)?;
    options.user_agent = user_agent.to_owned();
    options.timeout = timeout;
    let client = waldur_client::WaldurClient::new(options)?;
    let user = client.current_user_fields(&["uuid"]).await?;
    Ok(if user.uuid.is_empty() {
        "?".to_owned()
    } else {
        user.uuid
    })
}

/// Ready when any offering's Waldur answers.
pub async fn check_readiness(
    config: &AgentConfig,
    user_agent: &str,
    timeout: Duration,
) -> Result<String, Vec<String>> {
    let mut failures = Vec::new();
    for offering in &config.offerings {
        match check_offering(config, offering, user_agent, timeout).await {
            Ok(_) => return Ok(offering.name.clone()),
            Err(e) => failures.push(format!("{}: {e}", offering.name)),
        }
    }
    if failures.is_empty() {
        failures.push("no offerings configured".to_owned());
    }
    Err(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_and_missing_heartbeats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hb = dir.path().join("hb");
        assert!(check_liveness(&hb, Duration::from_secs(300)).is_err());
        crate::scheduler::write_heartbeat(&hb).expect("write");
        let age = check_liveness(&hb, Duration::from_secs(300)).expect("fresh");
        assert!(age < Duration::from_secs(5));
    }
}

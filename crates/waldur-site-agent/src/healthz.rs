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

/// A Waldur HTTP client for one offering: TLS verification and proxy as configured.
pub fn http_client(
    config: &AgentConfig,
    offering: &OfferingConfig,
    user_agent: &str,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(user_agent)
        .timeout(Duration::from_secs(20))
        .danger_accept_invalid_certs(!offering.verify_ssl);
    if let Some(proxy) = &config.global_proxy {
        builder = builder.proxy(reqwest::Proxy::all(proxy)?);
    }
    Ok(builder.build()?)
}

/// The `Authorization` header value: the static token, else an OIDC client-credentials token.
pub async fn authorization(
    client: &reqwest::Client,
    offering: &OfferingConfig,
) -> anyhow::Result<String> {
    if !offering.waldur_api_token.is_empty() {
        return Ok(format!("Token {}", offering.waldur_api_token.expose()));
    }
    let (Some(url), Some(id), Some(secret)) = (
        &offering.oidc_token_url,
        &offering.oidc_client_id,
        &offering.oidc_client_secret,
    ) else {
        anyhow::bail!("no waldur_api_token and no OIDC client configured");
    };
    let resp = client
        .post(url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id.as_str()),
            ("client_secret", secret.expose()),
        ])
        .send()
        .await?;
    let status = resp.status();
    if !status.is_success() {
        anyhow::bail!("OIDC token endpoint answered {status}");
    }
    let body: serde_json::Value = resp.json().await?;
    let token = body
        .get("access_token")
        .and_then(|t| t.as_str())
        .ok_or_else(|| anyhow::anyhow!("OIDC token response has no access_token"))?;
    Ok(format!("Bearer {token}"))
}

/// `GET <waldur_api_url>users/me/?field=uuid`; the user's UUID on success.
pub async fn check_offering(
    config: &AgentConfig,
    offering: &OfferingConfig,
    user_agent: &str,
) -> anyhow::Result<String> {
    let client = http_client(config, offering, user_agent)?;
    let auth = authorization(&client, offering).await?;
    let url = format!("{}users/me/?field=uuid", offering.waldur_api_url);
    let resp = client
        .get(&url)
        .header(reqwest::header::AUTHORIZATION, auth)
        .send()
        .await?;
    let status = resp.status();
    if !status.is_success() {
        anyhow::bail!("GET users/me/ answered {status}");
    }
    let body: serde_json::Value = resp.json().await?;
    Ok(body
        .get("uuid")
        .and_then(|u| u.as_str())
        .unwrap_or("?")
        .to_owned())
}

/// Ready when any offering's Waldur answers.
pub async fn check_readiness(
    config: &AgentConfig,
    user_agent: &str,
) -> Result<String, Vec<String>> {
    let mut failures = Vec::new();
    for offering in &config.offerings {
        match check_offering(config, offering, user_agent).await {
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

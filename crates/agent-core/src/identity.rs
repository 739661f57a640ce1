//! Agent identity, service and processor registration (agent-behaviour §4.1, waldur-api §7.5).
//! A Mastermind that answers 404 to these endpoints predates them: that is a degraded feature,
//! logged once per offering, never an error.

use jiff::Timestamp;
use waldur_client::{AgentIdentityRequest, Dependency, WaldurError};

use crate::context::OfferingContext;

/// What Mastermind knows this agent by.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    pub identity_uuid: String,
    pub service_uuid: Option<String>,
}

/// Result of a registration attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum RegistrationOutcome {
    Registered(Registration),
    /// The server has no agent-identity endpoints (404).
    Unsupported,
    /// Any other failure (logged); the processors carry on.
    Failed(String),
}

impl RegistrationOutcome {
    pub fn registration(&self) -> Option<&Registration> {
        match self {
            RegistrationOutcome::Registered(r) => Some(r),
            _ => None,
        }
    }
}

/// The identity name upstream uses: `agent-<offering uuid>`.
pub fn identity_name(ctx: &OfferingContext) -> String {
    format!("agent-{}", ctx.offering_uuid)
}

/// Register identity, the service for `mode`, and the processor (the heartbeat).
pub async fn register_agent(
    ctx: &OfferingContext,
    mode: &str,
    processor_name: &str,
    started_at: Timestamp,
) -> RegistrationOutcome {
    match try_register(ctx, mode, processor_name, started_at).await {
        Ok(registration) => {
            ctx.features.set_agent_identities(true);
            RegistrationOutcome::Registered(registration)
        }
        Err(e) if e.is_not_found() => {
            ctx.features.set_agent_identities(false);
            if ctx.mark_identity_unsupported() {
                tracing::warn!(
                    offering = %ctx.name(),
                    "Waldur has no site-agent identity endpoints (older Mastermind); continuing without registration"
                );
            }
            RegistrationOutcome::Unsupported
        }
        Err(e) => {
            tracing::warn!(offering = %ctx.name(), error = %e, "agent registration failed; continuing");
            RegistrationOutcome::Failed(e.to_string())
        }
    }
}

async fn try_register(
    ctx: &OfferingContext,
    mode: &str,
    processor_name: &str,
    started_at: Timestamp,
) -> Result<Registration, WaldurError> {
    let backend_kind = ctx
        .backends
        .health
        .first()
        .map(|h| h.kind())
        .unwrap_or("none");
    let request = AgentIdentityRequest {
        offering: ctx.offering_uuid.clone(),
        name: identity_name(ctx),
        version: ctx.settings.agent_version.clone(),
        // UTC, so uptime is never negative east of UTC.
        last_restarted: started_at.to_string(),
        dependencies: vec![Dependency {
            package: "waldur-site-agent-rs".into(),
            version: ctx.settings.agent_version.clone(),
        }],
        config_file_path: String::new(),
        config_file_content: String::new(),
    };
    let identity = ctx.client.register_agent_identity(&request).await?;
    let service = match ctx
        .client
        .register_agent_service(&identity.uuid, mode, mode)
        .await
    {
        Ok(service) => Some(service),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    if let Some(service) = &service {
        if let Err(e) = ctx
            .client
            .register_agent_processor(
                &service.uuid,
                processor_name,
                backend_kind,
                &ctx.settings.agent_version,
            )
            .await
        {
            if !e.is_not_found() {
                return Err(e);
            }
        }
    }
    Ok(Registration {
        identity_uuid: identity.uuid,
        service_uuid: service.map(|s| s.uuid),
    })
}

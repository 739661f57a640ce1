//! Errors of the processors: a Waldur call or a backend call failed, each knowing whether a
//! later attempt can help.

use backend_api::BackendError;
use waldur_client::WaldurError;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Waldur(#[from] WaldurError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Waldur data the agent cannot act on (missing resource reference, no service provider, ...).
    #[error("{0}")]
    Invalid(String),
}

impl CoreError {
    /// 5xx/429/transport on the Waldur side, or a backend error that says retry can help.
    pub fn is_transient(&self) -> bool {
        match self {
            CoreError::Waldur(e) => e.is_transient(),
            CoreError::Backend(e) => e.is_transient(),
            CoreError::Invalid(_) => false,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        CoreError::Invalid(message.into())
    }
}

pub type CoreResult<T> = Result<T, CoreError>;

/// Per-item outcome summary of one processor run over one offering.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CycleReport {
    pub offering: String,
    /// Items handled successfully (including "nothing to do").
    pub processed: usize,
    /// Items that failed (erred, or left for a later cycle after a transient error).
    pub failed: usize,
    /// Of `failed`, those left for a later attempt after a transient error.
    pub transient: usize,
    /// One line per failure: `<item>: <error>`.
    pub errors: Vec<String>,
}

impl CycleReport {
    pub fn new(offering: impl Into<String>) -> Self {
        CycleReport {
            offering: offering.into(),
            ..CycleReport::default()
        }
    }

    pub fn ok(&mut self) {
        self.processed += 1;
    }

    pub fn fail(&mut self, item: &str, error: impl std::fmt::Display) {
        self.failed += 1;
        self.errors.push(format!("{item}: {error}"));
    }

    /// A failure, counted as transient when the error says a later attempt may clear it.
    pub fn record(&mut self, item: &str, error: impl Classified + std::fmt::Display) {
        if error.is_transient() {
            self.retry(item, error);
        } else {
            self.fail(item, error);
        }
    }

    /// A failure that a later attempt may clear (the item was left untouched).
    pub fn retry(&mut self, item: &str, error: impl std::fmt::Display) {
        self.transient += 1;
        self.fail(item, error);
    }

    /// Whether every failure was transient (so redelivering the work can help).
    pub fn transient_only(&self) -> bool {
        self.failed > 0 && self.failed == self.transient
    }

    pub fn merge(&mut self, other: CycleReport) {
        self.processed += other.processed;
        self.failed += other.failed;
        self.transient += other.transient;
        self.errors.extend(other.errors);
    }

    pub fn has_failures(&self) -> bool {
        self.failed > 0
    }

    /// One line for the log: how many items failed and the first `shown` failures with their
    /// cause, e.g. `1 item(s) failed: list orders: Waldur request GET ... failed: ...`.
    pub fn failure_summary(&self, shown: usize) -> String {
        let mut text = format!("{} item(s) failed", self.failed);
        if self.transient > 0 {
            text.push_str(&format!(
                " ({} transient, left for the next cycle)",
                self.transient
            ));
        }
        for (i, e) in self.errors.iter().take(shown).enumerate() {
            text.push_str(if i == 0 { ": " } else { "; " });
            text.push_str(e);
        }
        if self.errors.len() > shown {
            text.push_str(&format!("; and {} more", self.errors.len() - shown));
        }
        text
    }
}

/// Errors that know whether retrying later can help.
pub trait Classified {
    fn is_transient(&self) -> bool;
}

impl Classified for CoreError {
    fn is_transient(&self) -> bool {
        CoreError::is_transient(self)
    }
}

impl Classified for backend_api::BackendError {
    fn is_transient(&self) -> bool {
        backend_api::BackendError::is_transient(self)
    }
}

impl Classified for waldur_client::WaldurError {
    fn is_transient(&self) -> bool {
        waldur_client::WaldurError::is_transient(self)
    }
}

impl<T: Classified> Classified for &T {
    fn is_transient(&self) -> bool {
        (*self).is_transient()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_summary_names_each_cause_up_to_a_limit() {
        let mut report = CycleReport::new("o");
        assert_eq!(report.failure_summary(2), "0 item(s) failed");
        report.fail(
            "list orders",
            "Waldur request GET /api/marketplace-orders/ failed: bad JSON",
        );
        assert_eq!(
            report.failure_summary(2),
            "1 item(s) failed: list orders: Waldur request GET /api/marketplace-orders/ failed: bad JSON"
        );
        report.retry("order a", "timed out");
        report.fail("order b", "refused");
        assert_eq!(
            report.failure_summary(2),
            "3 item(s) failed (1 transient, left for the next cycle): list orders: Waldur request GET /api/marketplace-orders/ failed: bad JSON; order a: timed out; and 1 more"
        );
    }
}

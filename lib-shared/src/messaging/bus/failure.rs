//! What a handler's error means for its entry. A dependency that is down is waited out
//! for as long as it takes and never counts against the entry; "not yet" comes back when
//! due; only an event its handler rejects uses up the delivery budget.

use chrono::{DateTime, Utc};

use crate::http::error::DependencyError;

/// A handler's answer that the event is right but early: handle it again at `due`.
#[derive(Debug, thiserror::Error)]
#[error("not due until {due}")]
pub struct NotYet {
    pub due: DateTime<Utc>,
}

/// How the bus treats a failed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// MongoDB or Redis unreachable or timing out: retry with backoff, never dead-letter.
    Dependency,
    /// Redeliver at this time; not a failure.
    Later(DateTime<Utc>),
    /// The handler rejected the event: counts toward the delivery budget.
    Rejected,
}

pub fn classify(error: &anyhow::Error) -> Failure {
    for cause in error.chain() {
        if let Some(not_yet) = cause.downcast_ref::<NotYet>() {
            return Failure::Later(not_yet.due);
        }
        if let Some(DependencyError::Unavailable(_)) = cause.downcast_ref::<DependencyError>() {
            return Failure::Dependency;
        }
        if let Some(e) = cause.downcast_ref::<mongodb::error::Error>()
            && matches!(
                DependencyError::from(e.clone()),
                DependencyError::Unavailable(_)
            )
        {
            return Failure::Dependency;
        }
        if let Some(e) = cause.downcast_ref::<redis::RedisError>()
            && is_transient(e)
        {
            return Failure::Dependency;
        }
    }
    Failure::Rejected
}

/// Redis errors that pass by themselves: the connection, a timeout, or a server that is
/// loading its data, busy or failing over.
pub fn is_transient(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(
            e.code(),
            Some("LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN")
        )
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn dependency_errors_are_told_from_rejections_through_context() {
        let down: anyhow::Error =
            DependencyError::Unavailable(anyhow::anyhow!("MongoDB ping")).into();
        assert_eq!(classify(&down.context("storing")), Failure::Dependency);
        let loading = redis::RedisError::from((redis::ErrorKind::Io, "reset"));
        let wrapped = Err::<(), _>(loading).context("reading").unwrap_err();
        assert_eq!(classify(&wrapped), Failure::Dependency);
        let due = Utc::now();
        assert_eq!(classify(&NotYet { due }.into()), Failure::Later(due));
        assert_eq!(
            classify(&anyhow::anyhow!("malformed order id")),
            Failure::Rejected
        );
        let odd: anyhow::Error = DependencyError::Unexpected(anyhow::anyhow!("odd")).into();
        assert_eq!(classify(&odd), Failure::Rejected);
    }
}

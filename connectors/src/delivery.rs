//! The outcome of one delivery attempt.

/// A message accepted by the channel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delivered {
    /// The channel's id of the delivered message, when it tells us.
    pub external_id: Option<String>,
}

/// Why a delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// Transient failures (timeouts, 5xx, rate limits) are retried; the others fail at once.
    pub retryable: bool,
    pub message: String,
}

impl DeliveryError {
    pub fn transient(message: impl Into<String>) -> Self {
        DeliveryError {
            retryable: true,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        DeliveryError {
            retryable: false,
            message: message.into(),
        }
    }
}

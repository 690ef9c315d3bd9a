//! Errors of the CoAP message layer, split by blame: bytes that are not a CoAP message
//! ([`FormatError`]), well-formed requests this server refuses ([`RequestError`], mapped to a
//! response code in one place, [`RequestError::response_code`]), and configuration mistakes
//! ([`ConfigError`]).

use coap_lite::ResponseType;
use thiserror::Error;

/// A datagram that is not a well-formed CoAP message (RFC 7252 §3, §4.2 "message format
/// error"). A Confirmable one is answered with RST, anything else is dropped silently.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Fewer than the four bytes of the fixed header.
    #[error("[RFC 7252 §3] datagram shorter than the 4-byte header")]
    TooShort,
    /// A version other than 1; such messages are ignored even when Confirmable.
    #[error("[RFC 7252 §3] unknown version {0}")]
    Version(u8),
    /// Token length 9..=15 is reserved.
    #[error("[RFC 7252 §3] reserved token length {0}")]
    TokenLength(u8),
    /// The datagram ends inside the token.
    #[error("[RFC 7252 §3] datagram ends inside the token")]
    TruncatedToken,
    /// Option delta or length nibble 15 outside the payload marker, or a truncated option.
    #[error("[RFC 7252 §3.1] malformed option")]
    Option,
    /// A payload marker followed by zero bytes.
    #[error("[RFC 7252 §3] payload marker followed by an empty payload")]
    EmptyPayload,
    /// An Empty message (code 0.00) that carries a token, options or payload.
    #[error("[RFC 7252 §4.1] empty message with token, options or payload")]
    NonEmptyEmpty,
    /// A code and message type that never go together (an ACK carrying a request, a non-empty
    /// RST, an empty NON).
    #[error("[RFC 7252 §4.2, §4.3] message type cannot carry this code")]
    TypeCode,
    /// coap-lite refused the bytes.
    #[error("malformed CoAP message: {0}")]
    Decode(String),
}

/// A well-formed request that the server answers itself with an error code; the application
/// never sees it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RequestError {
    /// An option we do not understand, whose number is odd (critical), or a known critical
    /// option with a value length outside its range or repeated when it is not repeatable.
    #[error("[RFC 7252 §5.4.1] unrecognised or malformed critical option {0}")]
    BadOption(u16),
    /// Proxy-Uri or Proxy-Scheme: this server is not a forward proxy.
    #[error("[RFC 7252 §5.7.2] proxying not supported")]
    Proxying,
    /// A method code in class 0 that we do not know.
    #[error("[RFC 7252 §5.8] method {0:#04x} not allowed")]
    UnknownMethod(u8),
    /// A Uri-Path or Uri-Query option that is not UTF-8.
    #[error("[RFC 7252 §5.10.1] Uri-Path or Uri-Query is not UTF-8")]
    Utf8,
    /// SZX 7 in a Block1 or Block2 option.
    #[error("[RFC 7959 §2.2] reserved block size exponent 7")]
    ReservedSzx,
    /// A Block1 block that does not continue the transfer in progress (wrong number, or no
    /// transfer in progress).
    #[error("[RFC 7959 §2.5] block {0} does not continue a transfer in progress")]
    Incomplete(u32),
    /// A Block1 block whose size is larger than the one in use, or a non-final block whose
    /// payload is not exactly the block size.
    #[error("[RFC 7959 §2.3] block payload size does not match its SZX")]
    BlockSize,
    /// The request body (announced in Size1, accumulated, or in one datagram) exceeds
    /// `Config::max_body`.
    #[error("[RFC 7959 §2.9.3] request body larger than {max} bytes")]
    TooLarge {
        /// The limit, echoed to the client in Size1.
        max: usize,
    },
    /// A Block2 request for a block past the end of the body.
    #[error("[RFC 7959 §2.4] block {0} is past the end of the body")]
    BlockOutOfRange(u32),
}

impl RequestError {
    /// The response code this error is answered with.
    pub fn response_code(&self) -> ResponseType {
        match self {
            RequestError::BadOption(_) => ResponseType::BadOption,
            RequestError::Proxying => ResponseType::ProxyingNotSupported,
            RequestError::UnknownMethod(_) => ResponseType::MethodNotAllowed,
            RequestError::Utf8
            | RequestError::ReservedSzx
            | RequestError::BlockSize
            | RequestError::BlockOutOfRange(_) => ResponseType::BadRequest,
            RequestError::Incomplete(_) => ResponseType::RequestEntityIncomplete,
            RequestError::TooLarge { .. } => ResponseType::RequestEntityTooLarge,
        }
    }
}

/// A [`crate::Config`] value out of range.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `ack_timeout` must be between 1 ms and 1 hour.
    #[error("ack_timeout must be between 1 ms and 1 hour")]
    AckTimeout,
    /// `ack_random_factor` must be a finite number in 1.0..=10.0 (RFC 7252 §4.8 requires ≥ 1).
    #[error("ack_random_factor must be in 1.0..=10.0")]
    AckRandomFactor,
    /// `max_retransmit` must be at most 20 (the timeout doubles each time).
    #[error("max_retransmit must be at most 20")]
    MaxRetransmit,
    /// `exchange_lifetime` must be between 1 s and 1 day.
    #[error("exchange_lifetime must be between 1 s and 1 day")]
    ExchangeLifetime,
    /// `block_size` must be a power of two in 16..=1024 (RFC 7959 §2.2).
    #[error("block_size must be a power of two in 16..=1024")]
    BlockSize,
    /// `max_body` must be in 1..=16 MiB.
    #[error("max_body must be in 1..=16777216")]
    MaxBody,
    /// `max_dedup_entries` and `max_block1_transfers` must be at least 1.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

//! Errors, one enum per layer, split by blame: bad bytes from a device ([`DecodeError`],
//! [`RegistrationError`], [`PathError`]), values the application cannot encode ([`EncodeError`]),
//! and bad object definitions from configuration ([`DdfError`]).
//!
//! [`RegistrationError::response_code`] is the one place that maps registration refusals to CoAP
//! response codes.

use coap_lite::ResponseType;

/// A path (`/obj[/inst[/res[/resinst]]]`) that does not parse (LwM2M TS 1.2 Core §6.1, §7.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// No object id: the empty string or `/`.
    #[error("empty path")]
    Empty,
    /// More than four levels.
    #[error("path deeper than /obj/inst/res/resinst")]
    TooDeep,
    /// A segment that is not a decimal id without sign or leading zero.
    #[error("path segment {0:?} is not a decimal id")]
    NotAnId(String),
    /// An id above 65534; 65535 is reserved (TS 1.2 Core §7.1: "MAX_ID 65535 is a reserved value").
    #[error("id {0} out of range (0..=65534; 65535 is reserved)")]
    OutOfRange(u32),
}

/// A Register or Update request the server refuses (TS 1.2 Core §6.2.1, §6.2.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// A query parameter or the payload is not UTF-8.
    #[error("query or payload is not UTF-8")]
    NotUtf8,
    /// The `ep` parameter is missing or empty.
    #[error("[TS Core §6.2.1] missing endpoint client name (ep)")]
    MissingEndpoint,
    /// The endpoint name is longer than the configured limit.
    #[error("endpoint client name longer than {0} bytes")]
    EndpointTooLong(usize),
    /// A parameter appears twice.
    #[error("duplicate query parameter {0:?}")]
    DuplicateParameter(String),
    /// A parameter value that does not parse, e.g. `lt=abc` or `b=X`.
    #[error("invalid {name} value {value:?}")]
    InvalidParameter {
        /// The parameter name.
        name: &'static str,
        /// The value received.
        value: String,
    },
    /// `lwm2m=` names a version this server does not implement (1.0, 1.1 and 1.2 are).
    #[error("[TS Core §6.2.1] unsupported LwM2M version {0:?}")]
    UnsupportedVersion(String),
    /// The payload is larger than the configured limit.
    #[error("registration payload larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The payload has more link entries than the configured limit.
    #[error("more than {0} link entries")]
    TooManyLinks(usize),
    /// The payload is not CoRE link format (RFC 6690 §2).
    #[error("[RFC 6690 §2] malformed link format at byte {0}")]
    MalformedLink(usize),
    /// A link target that is not an object or object instance under the root path.
    #[error("[TS Core §6.2.1] link target {0:?} is not /obj or /obj/inst")]
    InvalidObjectLink(String),
    /// A `ver` attribute that is not `major.minor`.
    #[error("invalid object version {0:?}")]
    InvalidObjectVersion(String),
    /// A `ct` attribute that is not a content format number (or a quoted list of them).
    #[error("invalid content format list {0:?}")]
    InvalidContentFormat(String),
}

impl RegistrationError {
    /// The CoAP response code to refuse the request with: 4.12 Precondition Failed when the
    /// versions are incompatible (TS 1.1 Core §6.2.1), 4.13 for an oversized payload, else 4.00.
    pub fn response_code(&self) -> ResponseType {
        match self {
            Self::UnsupportedVersion(_) => ResponseType::PreconditionFailed,
            Self::PayloadTooLarge(_) => ResponseType::RequestEntityTooLarge,
            _ => ResponseType::BadRequest,
        }
    }
}

/// Bytes in a content format that do not decode (TS 1.2 Core §7.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload is larger than the configured limit.
    #[error("payload larger than {0} bytes")]
    TooLarge(usize),
    /// More values, records or nested items than the configured limit.
    #[error("more than {0} entries")]
    TooManyEntries(usize),
    /// Nested deeper than allowed.
    #[error("nested deeper than {0} levels")]
    TooDeep(usize),
    /// The input ends inside an item (a TLV header or value, a CBOR item, ...).
    #[error("truncated input")]
    Truncated,
    /// Bytes after the last item.
    #[error("trailing bytes after the payload")]
    TrailingBytes,
    /// A TLV length that claims more bytes than its container holds (TS Core §7.4.3).
    #[error("[TS Core §7.4.3] TLV length {len} exceeds the {available} bytes available")]
    LengthOverrun {
        /// The length the TLV header claims.
        len: usize,
        /// The bytes left in the enclosing TLV or payload.
        available: usize,
    },
    /// A TLV identifier type in a place it cannot appear, e.g. an object instance inside a
    /// resource (TS Core §7.4.3).
    #[error("[TS Core §7.4.3] {0}")]
    TlvStructure(&'static str),
    /// The syntax of the format is violated (invalid JSON, CBOR, link format ...).
    #[error("malformed {format}: {detail}")]
    Syntax {
        /// The content format.
        format: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A record or TLV whose path is not under the requested path, or does not parse.
    #[error("path {0:?} is invalid or outside the requested path")]
    BadPath(String),
    /// A value whose encoding does not match the resource type in the object registry.
    #[error("value of {path} does not fit its type {expected}: {detail}")]
    TypeMismatch {
        /// The resource.
        path: String,
        /// The registry type.
        expected: &'static str,
        /// What was found.
        detail: String,
    },
    /// A format that carries one resource value was used on a path that is not a resource.
    #[error("{format} needs a resource path, got {path}")]
    NotAResource {
        /// The content format.
        format: &'static str,
        /// The requested path.
        path: String,
    },
    /// A SenML field this decoder must understand but does not (RFC 8428 §4.4: labels ending
    /// in `_`), or a base value/sum, which LwM2M does not use.
    #[error("[RFC 8428 §4.4] unsupported SenML field {0:?}")]
    UnsupportedField(String),
    /// A content format this crate cannot decode into values.
    #[error("content format {0} is not supported here")]
    UnsupportedFormat(u16),
}

/// Values that cannot be put in a content format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A value path not under the base path, or a base path the format cannot express.
    #[error("path {0} is outside the base path or not a resource")]
    BadPath(String),
    /// Two values for the same path.
    #[error("duplicate value for {0}")]
    Duplicate(String),
    /// The format carries exactly one value, and there were several or none.
    #[error("{0} carries exactly one resource value")]
    NotSingle(&'static str),
    /// A value the format cannot represent: NaN or infinity in JSON, a value over 16 MiB in TLV.
    #[error("value of {0} cannot be encoded in this format")]
    Unrepresentable(String),
    /// A content format this crate cannot encode.
    #[error("content format {0} is not supported here")]
    UnsupportedFormat(u16),
}

/// A JSON value (EMQX's typed shape) that does not convert to a [`crate::Value`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The JSON value does not fit the resource type.
    #[error("expected {expected}, got {got}")]
    Mismatch {
        /// The resource type.
        expected: &'static str,
        /// What was given, shortened.
        got: String,
    },
    /// The JSON shape is wrong (not an array of `{"path", "value"}` objects).
    #[error("{0}")]
    Shape(String),
    /// A path that does not parse.
    #[error(transparent)]
    Path(#[from] PathError),
}

/// An object definition (OMA DDF XML) that does not load.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DdfError {
    /// Not well-formed XML.
    #[error("DDF is not well-formed XML: {0}")]
    Xml(#[from] roxmltree::Error),
    /// A required element is missing or has a value that does not parse.
    #[error("DDF object {object}: {detail}")]
    Invalid {
        /// The object id or name, as far as known.
        object: String,
        /// What is wrong.
        detail: String,
    },
    /// Reading a DDF directory failed (only [`crate::Registry::load_dir`] does I/O).
    #[error("reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A request the application asked for that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OperationError {
    /// The operation does not apply at this path depth, e.g. Execute on an object.
    #[error("{operation} is not allowed on {path}")]
    BadPath {
        /// The operation.
        operation: &'static str,
        /// The path given.
        path: String,
    },
    /// Execute arguments that do not follow TS 1.2 Core §5.4.5 (`0='abc',1`).
    #[error("[TS Core §5.4.5] invalid execute arguments: {0}")]
    ExecuteArgs(String),
    /// A composite operation with no paths.
    #[error("composite operation without paths")]
    NoPaths,
    /// The payload does not encode.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

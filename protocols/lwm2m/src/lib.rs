//! Sans-IO LwM2M (OMA LightweightM2M 1.0, 1.1 and 1.2), server side: the data model and codecs
//! a broker needs, with no sockets, no async, no clock and no CoAP message layer. Values go in
//! and out as plain Rust values; the CoAP layer (`unigate-coap`) carries the bytes.
//!
//! # Layout
//!
//! - [`path`]: [`Path`], `/obj[/inst[/res[/resinst]]]`, parsed, displayed and ordered.
//! - [`registration`]: the Register and Update requests (TS 1.2 Core §6.2) parsed into a
//!   [`Registration`] or a [`RegistrationError`] that names the CoAP code to answer with.
//! - [`link`]: the CoRE link format (RFC 6690) those payloads and Discover responses use.
//! - [`operation`]: server-initiated [`Operation`]s built into [`CoapRequestParts`], Execute
//!   arguments, notification attributes, and EMQX's `codeMsg` names for response codes.
//! - [`registry`]: the object [`Registry`] from OMA DDF XML; the core objects 0–7 and IPSO
//!   3303, 3304 and 3311 are embedded.
//! - [`content`]: the content formats — TLV, LwM2M JSON, SenML JSON and CBOR, LwM2M CBOR, plain
//!   text, opaque, link format — between bytes and `Vec<(Path, Value)>`.
//! - [`value`]: [`Value`], [`ResourceType`] and the typed JSON the broker publishes.
//! - [`error`]: one error enum per layer.
//!
//! # Untrusted input
//!
//! Everything that decodes bytes from a device returns an error rather than panicking, checks
//! every length against the bytes present before allocating, and is bounded by [`Limits`]
//! (payload size, number of values, number of links). The fuzz targets `lwm2m_*` check this.

pub mod content;
pub mod error;
pub mod link;
pub mod operation;
pub mod path;
pub mod registration;
pub mod registry;
pub mod value;

pub use coap_lite::ResponseType;
pub use content::{decode, encode, ContentFormat};
pub use error::{DdfError, DecodeError, EncodeError, OperationError, PathError, RegistrationError, ValueError};
pub use operation::{code_msg, code_string, Attributes, CoapRequestParts, ExecuteArgs, Operation, WriteMode};
pub use path::Path;
pub use registration::{Binding, ObjectLink, Registration, RegistrationUpdate, Version};
pub use registry::Registry;
pub use value::{content_from_json, content_to_json, ResourceType, Value};

/// Bounds on what one message from a device may make this crate allocate.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest payload decoded, in bytes.
    pub max_payload: usize,
    /// Most values (or SenML records) in one payload.
    pub max_entries: usize,
    /// Most links in a Register, Update or Discover payload.
    pub max_link_entries: usize,
    /// Longest endpoint client name, in bytes.
    pub max_endpoint_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload: 1 << 20,
            max_entries: 4096,
            max_link_entries: 1024,
            max_endpoint_len: 256,
        }
    }
}

#[doc(hidden)]
pub mod fuzzing;

//! CoAP on the bench's hot path: a request is built once with `coap_lite` and then only patched
//! (message id, token, payload stamp) for each send, and what comes back is read by a small
//! header-and-options walker that allocates nothing. `coap_lite::Packet::from_bytes` builds a
//! map of option lists per datagram, which at 10⁵ datagrams/s would be a noticeable share of a
//! core the bench shares with the server.
//!
//! Message layout (RFC 7252 §3): `Ver|T|TKL`, `Code`, `Message ID` (2 bytes), token (TKL
//! bytes), options, then `0xFF` and the payload.

use anyhow::{bail, Context};
use unigate_coap::coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};

use super::payload::{Stamp, HEADER_LEN};

/// Message types (RFC 7252 §3, field T; 1, non-confirmable, needs no name here):
/// confirmable.
pub(crate) const CON: u8 = 0;
/// Acknowledgement.
pub(crate) const ACK: u8 = 2;
/// Reset.
pub(crate) const RST: u8 = 3;

/// Bytes of the token every bench request carries (the most RFC 7252 §5.3.1 allows).
const TOKEN_LEN: usize = 8;
/// Where the token starts: after the 4-byte fixed header.
const TOKEN_AT: usize = 4;

/// A request message, encoded once.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    bytes: Vec<u8>,
    /// Where the payload starts (`bytes.len()` when there is none).
    payload_at: usize,
}

/// What a request looks like.
#[derive(Debug, Clone)]
pub(crate) struct RequestSpec<'a> {
    /// CON or NON.
    pub confirmable: bool,
    /// The method.
    pub method: RequestType,
    /// Path and optional query, without the leading slash: `ps/a/b?qos=1`.
    pub uri: &'a str,
    /// The Observe option (RFC 7641 §2): 0 registers, 1 deregisters.
    pub observe: Option<u32>,
    /// Payload bytes (0 for none; otherwise at least the bench header).
    pub size: usize,
}

impl Template {
    /// Encodes `spec` with message id 0, a zero token and a zero payload.
    pub(crate) fn new(spec: &RequestSpec<'_>) -> anyhow::Result<Template> {
        if spec.size > 0 && spec.size < HEADER_LEN {
            bail!("a CoAP payload must be 0 or at least {HEADER_LEN} bytes (the bench header)");
        }
        let mut p = Packet::new();
        p.header.set_type(if spec.confirmable {
            MessageType::Confirmable
        } else {
            MessageType::NonConfirmable
        });
        p.header.code = MessageClass::Request(spec.method);
        p.set_token(vec![0; TOKEN_LEN]);
        let (path, query) = spec.uri.split_once('?').unwrap_or((spec.uri, ""));
        if let Some(observe) = spec.observe {
            p.set_observe_value(observe);
        }
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            p.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        for q in query.split('&').filter(|q| !q.is_empty()) {
            p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        p.payload = vec![0; spec.size];
        let bytes = p.to_bytes().context("encoding a CoAP request")?;
        let payload_at = bytes.len() - spec.size;
        Ok(Template { bytes, payload_at })
    }

    /// Writes the request with message id `mid`, token `token` and, when it has a payload,
    /// `stamp` into `out` (which is cleared first).
    pub(crate) fn write(&self, out: &mut Vec<u8>, mid: u16, token: u64, stamp: Stamp) {
        out.clear();
        out.extend_from_slice(&self.bytes);
        if let Some(m) = out.get_mut(2..4) {
            m.copy_from_slice(&mid.to_be_bytes());
        }
        if let Some(t) = out.get_mut(TOKEN_AT..TOKEN_AT + TOKEN_LEN) {
            t.copy_from_slice(&token.to_be_bytes());
        }
        if let Some(p) = out.get_mut(self.payload_at..self.payload_at + HEADER_LEN) {
            p[..4].copy_from_slice(&stamp.publisher.to_be_bytes());
            p[4..12].copy_from_slice(&stamp.seq.to_be_bytes());
            p[12..].copy_from_slice(&stamp.sent_ns.to_be_bytes());
        }
    }
}

/// The parts of a received message the bench looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head<'a> {
    /// [`CON`], [`NON`], [`ACK`] or [`RST`].
    pub ty: u8,
    /// The code byte: class in the top 3 bits (2 = success), detail in the low 5; 0 = Empty.
    pub code: u8,
    /// Message id.
    pub mid: u16,
    /// Token.
    pub token: &'a [u8],
    /// Payload (empty when there is none).
    pub payload: &'a [u8],
}

impl Head<'_> {
    /// The token as the number a bench request put there (`None` for any other token).
    pub(crate) fn token_u64(&self) -> Option<u64> {
        <[u8; TOKEN_LEN]>::try_from(self.token).ok().map(u64::from_be_bytes)
    }

    /// A 2.xx response.
    pub(crate) fn is_success(&self) -> bool {
        self.code >> 5 == 2
    }
}

/// Reads the header, token and payload of a CoAP message, skipping the options; `None` for
/// anything malformed (RFC 7252 §3, §3.1).
pub(crate) fn parse(d: &[u8]) -> Option<Head<'_>> {
    let (&b0, _) = d.split_first()?;
    if b0 >> 6 != 1 {
        return None;
    }
    let tkl = usize::from(b0 & 0x0F);
    if tkl > 8 {
        return None;
    }
    let code = *d.get(1)?;
    let mid = u16::from_be_bytes([*d.get(2)?, *d.get(3)?]);
    let token = d.get(TOKEN_AT..TOKEN_AT + tkl)?;
    let mut at = TOKEN_AT + tkl;
    let payload = loop {
        let Some(&byte) = d.get(at) else { break &d[d.len()..] };
        at += 1;
        if byte == 0xFF {
            let rest = d.get(at..)?;
            if rest.is_empty() {
                // §3: a payload marker followed by a zero-length payload is a format error.
                return None;
            }
            break rest;
        }
        // Delta first, then length, each possibly extended (§3.1).
        let (_, after_delta) = extended(byte >> 4, d, at)?;
        let (len, after_len) = extended(byte & 0x0F, d, after_delta)?;
        at = after_len.checked_add(len)?;
        if at > d.len() {
            return None;
        }
    };
    Some(Head {
        ty: (b0 >> 4) & 0x03,
        code,
        mid,
        token,
        payload,
    })
}

/// An option delta or length nibble with its extended bytes at `at`: (value, next offset).
fn extended(nibble: u8, d: &[u8], at: usize) -> Option<(usize, usize)> {
    match nibble {
        0..=12 => Some((usize::from(nibble), at)),
        13 => Some((usize::from(*d.get(at)?) + 13, at + 1)),
        14 => {
            let v = u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]);
            Some((usize::from(v) + 269, at + 2))
        }
        _ => None,
    }
}

/// An Empty ACK for message `mid` (RFC 7252 §4.2): what acknowledges a CON notification.
pub(crate) fn empty_ack(mid: u16) -> [u8; 4] {
    let [hi, lo] = mid.to_be_bytes();
    [0x40 | (ACK << 4), 0, hi, lo]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;
    use unigate_coap::coap_lite::ResponseType;

    #[test]
    fn template_patches_decode_with_coap_lite() {
        let t = Template::new(&RequestSpec {
            confirmable: true,
            method: RequestType::Post,
            uri: "ps/bench/x/7?qos=1",
            observe: None,
            size: 64,
        })
        .expect("template");
        let mut out = Vec::new();
        let stamp = Stamp {
            publisher: 7,
            seq: 9,
            sent_ns: 12345,
        };
        t.write(&mut out, 0xBEEF, 42, stamp);
        let p = Packet::from_bytes(&out).expect("valid CoAP");
        assert_eq!(p.header.message_id, 0xBEEF);
        assert_eq!(p.header.get_type(), MessageType::Confirmable);
        assert_eq!(p.get_token(), 42u64.to_be_bytes());
        let path: Vec<_> = p
            .get_option(CoapOption::UriPath)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        assert_eq!(
            path,
            vec![b"ps".to_vec(), b"bench".to_vec(), b"x".to_vec(), b"7".to_vec()]
        );
        assert_eq!(p.payload.len(), 64);
        assert_eq!(super::super::payload::read(&p.payload), Some(stamp));
        let head = parse(&out).expect("parses");
        assert_eq!((head.ty, head.mid, head.token_u64()), (CON, 0xBEEF, Some(42)));
        assert_eq!(head.payload, &p.payload[..]);
    }

    #[test]
    fn parse_reads_responses_with_long_options() {
        let mut p = Packet::new();
        p.header.set_type(MessageType::Acknowledgement);
        p.header.code = MessageClass::Response(ResponseType::Content);
        p.header.message_id = 7;
        p.set_token(vec![1, 2, 3]);
        p.set_observe_value(300);
        // A 20-byte and a 300-byte option value: one- and two-byte extended lengths.
        p.add_option(CoapOption::LocationPath, vec![b'a'; 20]);
        p.add_option(CoapOption::LocationPath, vec![0xFF; 300]);
        p.payload = b"hello".to_vec();
        let bytes = p.to_bytes().expect("encodes");
        let head = parse(&bytes).expect("parses");
        assert_eq!(head.ty, ACK);
        assert_eq!(head.code, 0x45);
        assert!(head.is_success());
        assert_eq!(head.mid, 7);
        assert_eq!(head.token, &[1, 2, 3]);
        assert_eq!(head.payload, b"hello");
    }

    #[test]
    fn parse_refuses_malformed() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0x00, 0x45, 0, 1]), None, "version 0");
        assert_eq!(parse(&[0x49, 0x45, 0, 1]), None, "token length 9");
        assert_eq!(parse(&[0x60, 0x45, 0, 1, 0xFF]), None, "marker without payload");
        assert_eq!(parse(&[0x60, 0x45, 0, 1, 0x15]), None, "option longer than the message");
        assert_eq!(parse(&[0x60, 0x45, 0, 1, 0xF1, 0]), None, "delta nibble 15");
        let ack = empty_ack(0x1234);
        let head = parse(&ack).expect("empty ACK parses");
        assert_eq!((head.ty, head.code, head.mid, head.token.len()), (ACK, 0, 0x1234, 0));
        assert!(Packet::from_bytes(&ack).is_ok());
    }
}

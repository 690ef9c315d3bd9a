//! Wire helpers on top of coap-lite: the framing checks coap-lite does not make, Block and
//! uint option values, tokens, and the 4-byte Empty messages.
//!
//! Decoding itself is `coap_lite::Packet::from_bytes`; `check_framing` only walks the option
//! headers to find where the payload marker is, because coap-lite accepts a version other than
//! 1 and a payload marker followed by nothing (both message format errors, RFC 7252 §3).

use coap_lite::{MessageClass, MessageType, Packet};

use crate::error::FormatError;

/// Option numbers this crate names (RFC 7252 §5.10, RFC 7641, RFC 7959, RFC 7967).
pub mod option {
    /// If-Match (critical, repeatable).
    pub const IF_MATCH: u16 = 1;
    /// Uri-Host (critical).
    pub const URI_HOST: u16 = 3;
    /// ETag (elective).
    pub const ETAG: u16 = 4;
    /// If-None-Match (critical, empty).
    pub const IF_NONE_MATCH: u16 = 5;
    /// Observe (elective, RFC 7641).
    pub const OBSERVE: u16 = 6;
    /// Uri-Port (critical).
    pub const URI_PORT: u16 = 7;
    /// Location-Path (elective, repeatable).
    pub const LOCATION_PATH: u16 = 8;
    /// Uri-Path (critical, repeatable).
    pub const URI_PATH: u16 = 11;
    /// Content-Format (elective).
    pub const CONTENT_FORMAT: u16 = 12;
    /// Max-Age (elective).
    pub const MAX_AGE: u16 = 14;
    /// Uri-Query (critical, repeatable).
    pub const URI_QUERY: u16 = 15;
    /// Accept (critical).
    pub const ACCEPT: u16 = 17;
    /// Location-Query (elective, repeatable).
    pub const LOCATION_QUERY: u16 = 20;
    /// Block2 (critical, RFC 7959).
    pub const BLOCK2: u16 = 23;
    /// Block1 (critical, RFC 7959).
    pub const BLOCK1: u16 = 27;
    /// Size2 (elective, RFC 7959).
    pub const SIZE2: u16 = 28;
    /// Proxy-Uri (critical).
    pub const PROXY_URI: u16 = 35;
    /// Proxy-Scheme (critical).
    pub const PROXY_SCHEME: u16 = 39;
    /// Size1 (elective).
    pub const SIZE1: u16 = 60;
    /// No-Response (elective, RFC 7967).
    pub const NO_RESPONSE: u16 = 258;
}

/// A message token: at most 8 bytes, stored inline so request metadata does not allocate.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Token {
    len: u8,
    bytes: [u8; 8],
}

impl Token {
    /// The first 8 bytes of `t` (longer tokens do not exist on the wire, RFC 7252 §3).
    pub(crate) fn new(t: &[u8]) -> Token {
        let mut bytes = [0u8; 8];
        let len = t.len().min(8);
        for (dst, src) in bytes.iter_mut().zip(t) {
            *dst = *src;
        }
        Token { len: len as u8, bytes }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(")?;
        for b in self.as_slice() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// A Block1 or Block2 option value (RFC 7959 §2.2): block number, more flag, size exponent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockOpt {
    /// Block number (20 bits).
    pub num: u32,
    /// More blocks follow.
    pub more: bool,
    /// Size exponent: the block size is 2^(szx + 4). 7 is reserved.
    pub szx: u8,
}

impl BlockOpt {
    /// Block size in bytes, 16..=1024 (2048 for the reserved SZX 7).
    pub fn size(&self) -> usize {
        16usize << self.szx.min(7)
    }

    /// Decodes an option value of 0..=3 bytes.
    pub fn decode(v: &[u8]) -> Option<BlockOpt> {
        let n = decode_uint(v, 3)?;
        Some(BlockOpt {
            num: n >> 4,
            more: n & 0x8 != 0,
            szx: (n & 0x7) as u8,
        })
    }

    /// Encodes in the fewest bytes (RFC 7959 §2.2).
    pub fn encode(&self) -> Vec<u8> {
        let n = (self.num & 0xF_FFFF) << 4 | u32::from(self.more) << 3 | u32::from(self.szx & 0x7);
        encode_uint(n)
    }
}

/// Decodes a uint option value (RFC 7252 §3.2) of at most `max_len` bytes.
pub(crate) fn decode_uint(v: &[u8], max_len: usize) -> Option<u32> {
    if v.len() > max_len || v.len() > 4 {
        return None;
    }
    Some(v.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)))
}

/// Encodes a uint option value without leading zero bytes (0 is the empty string).
pub fn encode_uint(n: u32) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes.get(skip..).unwrap_or(&[]).to_vec()
}

/// An Empty message (code 0.00, no token) of the given type: an empty ACK or a RST.
pub(crate) fn empty_message(t: MessageType, mid: u16) -> Vec<u8> {
    let ty = match t {
        MessageType::Confirmable => 0,
        MessageType::NonConfirmable => 1,
        MessageType::Acknowledgement => 2,
        MessageType::Reset => 3,
    };
    let [hi, lo] = mid.to_be_bytes();
    vec![0x40 | ty << 4, 0, hi, lo]
}

/// What the fixed header says about a datagram, readable even when the rest is malformed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawHeader {
    pub(crate) mtype: MessageType,
    pub(crate) mid: u16,
}

/// Reads the fixed header (RFC 7252 §3), if there are four bytes.
pub(crate) fn raw_header(buf: &[u8]) -> Option<RawHeader> {
    let [b0, _, hi, lo] = *buf.first_chunk::<4>()?;
    let mtype = match (b0 >> 4) & 0x3 {
        0 => MessageType::Confirmable,
        1 => MessageType::NonConfirmable,
        2 => MessageType::Acknowledgement,
        _ => MessageType::Reset,
    };
    Some(RawHeader {
        mtype,
        mid: u16::from_be_bytes([hi, lo]),
    })
}

/// Checks what coap-lite does not (RFC 7252 §3): version 1, token length, option framing, no
/// empty payload after a marker, and an Empty message being exactly 4 bytes.
pub(crate) fn check_framing(buf: &[u8]) -> Result<(), FormatError> {
    let [b0, code] = *buf.first_chunk::<2>().ok_or(FormatError::TooShort)?;
    if buf.len() < 4 {
        return Err(FormatError::TooShort);
    }
    let version = b0 >> 6;
    if version != 1 {
        return Err(FormatError::Version(version));
    }
    let tkl = b0 & 0x0F;
    if tkl > 8 {
        return Err(FormatError::TokenLength(tkl));
    }
    if code == 0 {
        return if buf.len() == 4 && tkl == 0 {
            Ok(())
        } else {
            Err(FormatError::NonEmptyEmpty)
        };
    }
    let mut rest = buf.get(4 + usize::from(tkl)..).ok_or(FormatError::TruncatedToken)?;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == 0xFF {
            return if tail.is_empty() {
                Err(FormatError::EmptyPayload)
            } else {
                Ok(())
            };
        }
        rest = tail;
        let (_, r) = option_ext(byte >> 4, rest)?;
        rest = r;
        let (len, r) = option_ext(byte & 0x0F, rest)?;
        rest = r.get(len..).ok_or(FormatError::Option)?;
    }
    Ok(())
}

/// Reads the extended delta or length for nibble `n` (RFC 7252 §3.1).
fn option_ext(n: u8, rest: &[u8]) -> Result<(usize, &[u8]), FormatError> {
    match n {
        0..=12 => Ok((usize::from(n), rest)),
        13 => {
            let (b, r) = rest.split_first().ok_or(FormatError::Option)?;
            Ok((usize::from(*b) + 13, r))
        }
        14 => {
            let (b, r) = rest.split_first_chunk::<2>().ok_or(FormatError::Option)?;
            Ok((usize::from(u16::from_be_bytes(*b)) + 269, r))
        }
        _ => Err(FormatError::Option),
    }
}

/// Decodes a datagram: [`check_framing`], then coap-lite, then the type/code combinations of
/// RFC 7252 §4.2–§4.3 (an ACK carries a response or nothing, a RST and only a RST or CON may
/// be Empty).
pub(crate) fn decode(buf: &[u8]) -> Result<Packet, FormatError> {
    check_framing(buf)?;
    let packet = Packet::from_bytes(buf).map_err(|e| FormatError::Decode(e.to_string()))?;
    let code = packet.header.code;
    let ok = match packet.header.get_type() {
        // Reserved classes on a CON are rejected with RST by the caller.
        MessageType::Confirmable => true,
        MessageType::NonConfirmable => code != MessageClass::Empty,
        MessageType::Acknowledgement => code == MessageClass::Empty || is_response(code),
        MessageType::Reset => code == MessageClass::Empty,
    };
    if ok {
        Ok(packet)
    } else {
        Err(FormatError::TypeCode)
    }
}

/// The class (the `c` of `c.dd`) of a code.
pub(crate) fn class_of(code: MessageClass) -> u8 {
    u8::from(code) >> 5
}

/// A response code: class 2, 4 or 5, including codes coap-lite has no name for.
pub(crate) fn is_response(code: MessageClass) -> bool {
    matches!(class_of(code), 2 | 4 | 5)
}

/// Encodes `packet`; an encoding failure (only possible when the options make it larger than
/// coap-lite's 64000-byte limit) yields a bare 5.00 with the same type, id and token instead.
pub(crate) fn encode(packet: &Packet) -> Vec<u8> {
    match packet.to_bytes() {
        Ok(b) => b,
        Err(_) => {
            let mut p = Packet::new();
            p.header.set_type(packet.header.get_type());
            p.header.message_id = packet.header.message_id;
            p.header.code = MessageClass::Response(coap_lite::ResponseType::InternalServerError);
            p.set_token(packet.get_token().to_vec());
            p.to_bytes()
                .unwrap_or_else(|_| empty_message(MessageType::Reset, packet.header.message_id))
        }
    }
}

/// FNV-1a, used for ETags derived from the body (the same body gets the same ETag).
pub(crate) fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_roundtrip_and_rfc_examples() {
        // RFC 7959 §2.2: num 0, M 0, szx 0 is the empty string.
        assert_eq!(
            BlockOpt {
                num: 0,
                more: false,
                szx: 0
            }
            .encode(),
            Vec::<u8>::new()
        );
        let b = BlockOpt {
            num: 4,
            more: true,
            szx: 6,
        };
        assert_eq!(b.encode(), vec![0x4E]);
        assert_eq!(BlockOpt::decode(&[0x4E]), Some(b));
        let big = BlockOpt {
            num: 0xF_FFFF,
            more: false,
            szx: 2,
        };
        assert_eq!(BlockOpt::decode(&big.encode()), Some(big));
        assert_eq!(BlockOpt::decode(&[1, 2, 3, 4]), None);
    }

    #[test]
    fn uint_minimal() {
        assert_eq!(encode_uint(0), Vec::<u8>::new());
        assert_eq!(encode_uint(0x100), vec![1, 0]);
        assert_eq!(decode_uint(&[1, 0], 2), Some(256));
        assert_eq!(decode_uint(&[1, 0, 0], 2), None);
    }

    #[test]
    fn framing_errors() {
        assert_eq!(check_framing(&[0x40, 0x01]), Err(FormatError::TooShort));
        assert_eq!(check_framing(&[0x80, 0x01, 0, 1]), Err(FormatError::Version(2)));
        assert_eq!(check_framing(&[0x49, 0x01, 0, 1]), Err(FormatError::TokenLength(9)));
        assert_eq!(
            check_framing(&[0x42, 0x01, 0, 1, 0xAA]),
            Err(FormatError::TruncatedToken)
        );
        assert_eq!(check_framing(&[0x40, 0x01, 0, 1, 0xFF]), Err(FormatError::EmptyPayload));
        assert_eq!(check_framing(&[0x40, 0x01, 0, 1, 0xB3, b'a']), Err(FormatError::Option));
        assert_eq!(check_framing(&[0x40, 0x01, 0, 1, 0xF0]), Err(FormatError::Option));
        assert_eq!(
            check_framing(&[0x41, 0x00, 0, 1, 0x01]),
            Err(FormatError::NonEmptyEmpty)
        );
        assert_eq!(check_framing(&[0x40, 0x00, 0, 1]), Ok(()));
        assert_eq!(check_framing(&[0x40, 0x01, 0, 1, 0xB1, b'a', 0xFF, b'x']), Ok(()));
    }

    #[test]
    fn type_code_combinations() {
        // ACK carrying a GET, non-empty RST, empty NON.
        assert_eq!(decode(&[0x60, 0x01, 0, 1]), Err(FormatError::TypeCode));
        assert_eq!(decode(&[0x70, 0x45, 0, 1]), Err(FormatError::TypeCode));
        assert_eq!(decode(&[0x50, 0x00, 0, 1]).err(), Some(FormatError::TypeCode));
        assert!(decode(&[0x60, 0x00, 0, 1]).is_ok());
        assert!(decode(&[0x60, 0x45, 0, 1]).is_ok());
        assert!(decode(&[0x70, 0x00, 0, 1]).is_ok());
    }

    #[test]
    fn token_inline() {
        let t = Token::new(&[1, 2, 3]);
        assert_eq!(t.as_slice(), &[1, 2, 3]);
        assert_eq!(Token::new(&[9; 12]).as_slice(), &[9; 8]);
        assert_eq!(Token::default().as_slice(), &[] as &[u8]);
    }
}

//! Primitive data representations (MQTT 5 §1.5): integers, variable byte integers, UTF-8
//! strings and binary data. [`Reader`] decodes them from a bounds-checked cursor that never
//! panics; [`Sink`] encodes them either into a buffer or into a byte [`Counter`], so that one
//! piece of code both writes a packet and measures it (`encoded_len` cannot drift from `encode`).

use bytes::{Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::types::PacketId;

/// The largest value a variable byte integer can carry (MQTT 5 §1.5.5).
pub(crate) const MAX_VARINT: usize = 268_435_455;

/// A cursor over the bytes of one packet (or one property block).
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes the next `n` bytes, or fails with `truncated` if fewer are left.
    pub(crate) fn take(&mut self, n: usize, truncated: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Malformed(truncated));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes everything that is left (a PUBLISH payload, a list of reason codes).
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&first, tail) = self.buf.split_first().ok_or(DecodeError::Malformed(
            "packet ends inside a one-byte field (MQTT 5 §1.5)",
        ))?;
        self.buf = tail;
        Ok(first)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let bytes = self.take(2, "packet ends inside a Two Byte Integer (MQTT 5 §1.5.2)")?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4, "packet ends inside a Four Byte Integer (MQTT 5 §1.5.3)")?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A variable byte integer of at most four bytes (MQTT 5 §1.5.5). Non-minimal encodings are
    /// accepted: [MQTT-1.5.5-1] binds the sender, and rejecting them buys nothing.
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        match parse_varint(self.buf)? {
            Some((value, used)) => {
                self.buf = self.buf.get(used..).unwrap_or_default();
                Ok(value)
            }
            None => Err(DecodeError::Malformed(
                "packet ends inside a Variable Byte Integer (MQTT 5 §1.5.5)",
            )),
        }
    }

    /// A length-prefixed field, unchecked (protocol name).
    pub(crate) fn prefixed(&mut self, truncated: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len), truncated)
    }

    /// A UTF-8 encoded string: well-formed, no surrogates ([MQTT-1.5.4-1]) and no U+0000
    /// ([MQTT-1.5.4-2]). Rust's UTF-8 validation already rejects encoded surrogates and
    /// overlong forms.
    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let bytes = self.prefixed("packet ends inside a UTF-8 Encoded String (MQTT 5 §1.5.4)")?;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| DecodeError::Malformed("[MQTT-1.5.4-1] string is not well-formed UTF-8"))?;
        if text.contains('\0') {
            return Err(DecodeError::Malformed("[MQTT-1.5.4-2] string contains U+0000"));
        }
        Ok(text.to_owned())
    }

    /// Binary data, copied out so that it does not pin the read buffer.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let bytes = self.prefixed("packet ends inside Binary Data (MQTT 5 §1.5.6)")?;
        Ok(Bytes::copy_from_slice(bytes))
    }

    /// A UTF-8 string pair (MQTT 5 §1.5.7).
    pub(crate) fn string_pair(&mut self) -> Result<(String, String), DecodeError> {
        Ok((self.string()?, self.string()?))
    }

    /// A non-zero packet identifier ([MQTT-2.2.1-3]).
    pub(crate) fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        PacketId::new(self.u16()?).ok_or(DecodeError::Malformed("[MQTT-2.2.1-3] packet identifier is 0"))
    }

    /// Fails if anything is left: every byte inside the remaining length must belong to a field.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed(
                "bytes left over after the last field of the packet (MQTT 5 §2.1.4)",
            ))
        }
    }
}

/// Parses a variable byte integer from the front of `buf`: `Ok(None)` if `buf` ends before the
/// integer does, else the value and the number of bytes it used.
pub(crate) fn parse_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (i, &byte) in buf.iter().enumerate().take(4) {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        Err(DecodeError::Malformed(
            "Variable Byte Integer longer than four bytes (MQTT 5 §1.5.5)",
        ))
    } else {
        Ok(None)
    }
}

/// Bytes needed to encode `value` as a variable byte integer.
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Where encoded bytes go: a real buffer, or a [`Counter`] that only measures.
pub(crate) trait Sink {
    fn put_slice(&mut self, bytes: &[u8]);

    fn put_u8(&mut self, value: u8) {
        self.put_slice(&[value]);
    }

    fn put_u16(&mut self, value: u16) {
        self.put_slice(&value.to_be_bytes());
    }

    fn put_u32(&mut self, value: u32) {
        self.put_slice(&value.to_be_bytes());
    }

    /// A variable byte integer; fails above [`MAX_VARINT`].
    fn put_varint(&mut self, value: usize) -> Result<(), EncodeError> {
        if value > MAX_VARINT {
            return Err(EncodeError::PacketTooLarge);
        }
        let mut rest = value;
        loop {
            // Truncation is the point: the low seven bits of what is left.
            let mut byte = (rest & 0x7F) as u8;
            rest >>= 7;
            if rest > 0 {
                byte |= 0x80;
            }
            self.put_u8(byte);
            if rest == 0 {
                return Ok(());
            }
        }
    }

    fn put_str(&mut self, value: &str) -> Result<(), EncodeError> {
        let len = u16::try_from(value.len()).map_err(|_| EncodeError::StringTooLong)?;
        self.put_u16(len);
        self.put_slice(value.as_bytes());
        Ok(())
    }

    fn put_binary(&mut self, value: &[u8]) -> Result<(), EncodeError> {
        let len = u16::try_from(value.len()).map_err(|_| EncodeError::BinaryTooLong)?;
        self.put_u16(len);
        self.put_slice(value);
        Ok(())
    }
}

impl Sink for BytesMut {
    fn put_slice(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A sink that counts bytes instead of storing them.
#[derive(Debug, Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    fn put_slice(&mut self, bytes: &[u8]) {
        self.0 = self.0.saturating_add(bytes.len());
    }
}

/// Measures what `write` would emit.
pub(crate) fn measure(write: impl FnOnce(&mut Counter) -> Result<(), EncodeError>) -> Result<usize, EncodeError> {
    let mut counter = Counter::default();
    write(&mut counter)?;
    Ok(counter.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn varint_boundaries_from_the_spec() {
        // MQTT 5 §1.5.5, Table 1-1.
        let cases: &[(&[u8], u32)] = &[
            (&[0x00], 0),
            (&[0x7F], 127),
            (&[0x80, 0x01], 128),
            (&[0xFF, 0x7F], 16_383),
            (&[0x80, 0x80, 0x01], 16_384),
            (&[0xFF, 0xFF, 0x7F], 2_097_151),
            (&[0x80, 0x80, 0x80, 0x01], 2_097_152),
            (&[0xFF, 0xFF, 0xFF, 0x7F], 268_435_455),
        ];
        for &(bytes, value) in cases {
            assert_eq!(parse_varint(bytes), Ok(Some((value, bytes.len()))));
            let mut out = BytesMut::new();
            out.put_varint(value as usize).unwrap();
            assert_eq!(&out[..], bytes);
            assert_eq!(varint_len(value as usize), bytes.len());
        }
    }

    #[test]
    fn varint_needs_more_or_is_too_long() {
        assert_eq!(parse_varint(&[]), Ok(None));
        assert_eq!(parse_varint(&[0x80, 0x80, 0x80]), Ok(None));
        assert!(matches!(
            parse_varint(&[0x80, 0x80, 0x80, 0x80]),
            Err(DecodeError::Malformed(_))
        ));
        // Non-minimal but at most four bytes: accepted.
        assert_eq!(parse_varint(&[0x80, 0x00]), Ok(Some((0, 2))));
    }

    #[test]
    fn varint_encode_rejects_too_large() {
        let mut out = BytesMut::new();
        assert_eq!(out.put_varint(MAX_VARINT + 1), Err(EncodeError::PacketTooLarge));
        assert!(out.is_empty());
    }

    #[test]
    fn strings_reject_nul_surrogates_and_bad_utf8() {
        let nul = [0x00, 0x03, b'a', 0x00, b'b'];
        assert_eq!(
            Reader::new(&nul).string(),
            Err(DecodeError::Malformed("[MQTT-1.5.4-2] string contains U+0000"))
        );
        // U+D800 encoded as if it were a scalar value (CESU-8 style).
        let surrogate = [0x00, 0x03, 0xED, 0xA0, 0x80];
        assert!(matches!(
            Reader::new(&surrogate).string(),
            Err(DecodeError::Malformed("[MQTT-1.5.4-1] string is not well-formed UTF-8"))
        ));
        let overlong = [0x00, 0x02, 0xC0, 0xAF];
        assert!(Reader::new(&overlong).string().is_err());
        // MQTT 5 §1.5.4 example: "A𪛔" (U+0041 U+2A6D4).
        let ok = [0x00, 0x05, 0x41, 0xF0, 0xAA, 0x9B, 0x94];
        assert_eq!(Reader::new(&ok).string().unwrap(), "A\u{2A6D4}");
    }

    #[test]
    fn truncated_fields_are_malformed() {
        assert!(Reader::new(&[0x00, 0x05, b'a']).string().is_err());
        assert!(Reader::new(&[0x01]).u16().is_err());
        assert!(Reader::new(&[0x01, 0x02, 0x03]).u32().is_err());
        assert!(Reader::new(&[]).u8().is_err());
        assert!(Reader::new(&[0x80]).varint().is_err());
        assert!(Reader::new(&[0x00, 0x00]).packet_id().is_err());
    }

    #[test]
    fn long_strings_cannot_be_encoded() {
        let long = "x".repeat(65_536);
        assert_eq!(Counter::default().put_str(&long), Err(EncodeError::StringTooLong));
        assert_eq!(
            Counter::default().put_binary(long.as_bytes()),
            Err(EncodeError::BinaryTooLong)
        );
        assert!(Counter::default().put_str(&long[1..]).is_ok());
    }
}

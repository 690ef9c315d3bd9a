//! The bench payload: who sent it, which message it is, and when, followed by padding up to
//! `--size`. All integers are big-endian:
//!
//! ```text
//! publisher index: u32 | sequence number: u64 | send time, ns on the bench clock: u64 | zeros…
//! ```
//!
//! Sequence numbers start at 0 and grow by one per message of a publisher, so a subscriber can
//! tell lost, duplicated and reordered messages apart per publisher.

use bytes::{Buf, BufMut, BytesMut};

/// Bytes of the header; the smallest `--size`.
pub(crate) const HEADER_LEN: usize = 20;

/// What a subscriber reads back out of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Index of the publisher within the run.
    pub publisher: u32,
    /// The publisher's sequence number, from 0.
    pub seq: u64,
    /// When the publisher queued it, ns on [`crate::bench::clock`].
    pub sent_ns: u64,
}

/// Appends a `size`-byte payload (at least [`HEADER_LEN`]) to `buf`.
pub(crate) fn write(buf: &mut BytesMut, stamp: Stamp, size: usize) {
    buf.reserve(size.max(HEADER_LEN));
    buf.put_u32(stamp.publisher);
    buf.put_u64(stamp.seq);
    buf.put_u64(stamp.sent_ns);
    buf.put_bytes(0, size.saturating_sub(HEADER_LEN));
}

/// Reads the header back; `None` for a payload that is too short to be ours.
pub(crate) fn read(mut payload: &[u8]) -> Option<Stamp> {
    if payload.len() < HEADER_LEN {
        return None;
    }
    Some(Stamp {
        publisher: payload.get_u32(),
        seq: payload.get_u64(),
        sent_ns: payload.get_u64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_padding() {
        let stamp = Stamp {
            publisher: 7,
            seq: 1 << 40,
            sent_ns: 123_456_789,
        };
        let mut buf = BytesMut::new();
        write(&mut buf, stamp, 64);
        assert_eq!(buf.len(), 64);
        assert_eq!(read(&buf), Some(stamp));
    }

    #[test]
    fn short_payload_is_not_ours() {
        assert_eq!(read(&[0; HEADER_LEN - 1]), None);
    }

    #[test]
    fn size_below_header_still_writes_the_header() {
        let mut buf = BytesMut::new();
        let stamp = Stamp {
            publisher: 1,
            seq: 2,
            sent_ns: 3,
        };
        write(&mut buf, stamp, 4);
        assert_eq!(read(&buf), Some(stamp));
    }
}

//! DTLS record framing (RFC 6347 §4.1) as far as the wrapper needs it: splitting a datagram into
//! whole records and reading each header's content type and epoch. Protected payloads are never
//! looked at; that is rtc-dtls' job.

use bytes::BytesMut;

/// Length of a DTLS 1.2 record header: type, version, epoch, sequence number, length.
const HEADER_LEN: usize = 13;
/// `ContentType.change_cipher_spec` (RFC 5246 §6.2.1).
const CHANGE_CIPHER_SPEC: u8 = 20;

/// A datagram that is not a sequence of whole records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadFraming;

/// One record of a datagram.
#[derive(Debug, Clone, Copy)]
struct Record<'a> {
    content_type: u8,
    epoch: u16,
    /// Header and body.
    bytes: &'a [u8],
}

/// Splits off the first record of `buf`; `None` if it is truncated.
fn split_record(buf: &[u8]) -> Option<(Record<'_>, &[u8])> {
    // rtc-dtls' `unpack_datagram` also rejects a record with an empty body (its check is
    // `remaining <= header`); mirror that so a datagram we pass on never fails its framing check.
    if buf.len() <= HEADER_LEN {
        return None;
    }
    let content_type = *buf.first()?;
    let epoch = u16::from_be_bytes([*buf.get(3)?, *buf.get(4)?]);
    let body = usize::from(u16::from_be_bytes([*buf.get(11)?, *buf.get(12)?]));
    let (bytes, rest) = buf.split_at_checked(HEADER_LEN + body)?;
    Some((
        Record {
            content_type,
            epoch,
            bytes,
        },
        rest,
    ))
}

/// Calls `f` on every record; `Err` (after calling `f` on the whole records before it) if the
/// datagram is empty or does not end on a record boundary.
fn for_each_record<'a>(mut buf: &'a [u8], mut f: impl FnMut(Record<'a>)) -> Result<(), BadFraming> {
    if buf.is_empty() {
        return Err(BadFraming);
    }
    while !buf.is_empty() {
        let (record, rest) = split_record(buf).ok_or(BadFraming)?;
        f(record);
        buf = rest;
    }
    Ok(())
}

/// Checks what rtc-dtls checks before touching any state: the datagram is one or more whole
/// records, each with a 13-byte header and a non-empty body that fits.
pub(crate) fn check_framing(buf: &[u8]) -> Result<(), BadFraming> {
    for_each_record(buf, |_| {})
}

/// After the handshake keeps only the records that rtc-dtls authenticates: epoch >= 1 and not
/// ChangeCipherSpec. `Ok(None)` if none is left.
///
/// Works around two rtc-dtls 0.21.1 flaws reachable by an off-path spoofer:
/// * an epoch-1 ChangeCipherSpec is "decrypted" as a pass-through and bumps the remote epoch to
///   2, after which every genuine epoch-1 record is discarded (the session is silently dead);
/// * every spoofed epoch-0 handshake record makes an established server resend its last flight
///   to the (spoofed) source address until the retransmission budget is spent, after which a
///   genuine lost-last-flight recovery is no longer possible.
///
/// The RFC 6347 §4.2.4 case (the client repeats its last flight because ours was lost) still
/// works: its epoch-1 Finished passes and makes rtc-dtls resend our last flight.
pub(crate) fn authenticated_records(buf: &[u8]) -> Result<Option<BytesMut>, BadFraming> {
    let mut out = BytesMut::new();
    for_each_record(buf, |r| {
        if r.epoch != 0 && r.content_type != CHANGE_CIPHER_SPEC {
            out.extend_from_slice(r.bytes);
        }
    })?;
    Ok((!out.is_empty()).then_some(out))
}

/// Before the handshake passes epoch-0 records, and epoch >= 1 records while they fit in
/// `budget` (bytes, decremented). `Ok(None)` if nothing is left.
///
/// rtc-dtls 0.21.1 queues every next-epoch record that arrives before its keys exist, without
/// a limit, so one client (no spoofing needed) could grow a half-open peer without bound until
/// the handshake deadline. A genuine client sends a single epoch-1 record (Finished) per
/// transmission of its last flight, well under 100 bytes each.
pub(crate) fn budget_early_records(buf: &[u8], budget: &mut usize) -> Result<Option<BytesMut>, BadFraming> {
    let mut out = BytesMut::with_capacity(buf.len());
    for_each_record(buf, |r| {
        if r.epoch == 0 {
            out.extend_from_slice(r.bytes);
        } else if r.bytes.len() <= *budget {
            *budget -= r.bytes.len();
            out.extend_from_slice(r.bytes);
        }
    })?;
    Ok((!out.is_empty()).then_some(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn record(content_type: u8, epoch: u16, body: &[u8]) -> Vec<u8> {
        let mut r = vec![content_type, 0xfe, 0xfd];
        r.extend_from_slice(&epoch.to_be_bytes());
        r.extend_from_slice(&[0, 0, 0, 0, 0, 7]);
        r.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn framing() {
        let one = record(23, 1, b"abc");
        let two = [record(22, 0, b"x"), record(23, 1, b"yz")].concat();
        assert_eq!(check_framing(&one), Ok(()));
        assert_eq!(check_framing(&two), Ok(()));
        assert_eq!(check_framing(&[]), Err(BadFraming));
        // A bare header (empty body) is refused, as rtc-dtls does.
        assert_eq!(check_framing(&record(23, 1, b"")), Err(BadFraming));
        assert_eq!(check_framing(&one[..one.len() - 1]), Err(BadFraming));
        assert_eq!(check_framing(&[&one[..], &[0u8; 5]].concat()), Err(BadFraming));
        assert_eq!(check_framing(&[&one[..], &[0u8; 13]].concat()), Err(BadFraming));
        assert_eq!(check_framing(&[0u8; 12]), Err(BadFraming));
    }

    #[test]
    fn filter_keeps_only_protected_records() {
        let app = record(23, 1, b"data");
        let fin = record(22, 1, b"finished");
        let dgram = [
            record(22, 0, b"cke"),
            record(20, 0, b"\x01"),
            fin.clone(),
            record(20, 1, b"\x01"),
            app.clone(),
        ]
        .concat();
        let kept = authenticated_records(&dgram).unwrap().unwrap();
        assert_eq!(&kept[..], &[fin, app].concat()[..]);
        assert_eq!(authenticated_records(&record(22, 0, b"hello")), Ok(None));
        assert_eq!(authenticated_records(&record(20, 1, b"\x01")), Ok(None));
        assert_eq!(authenticated_records(&record(23, 1, b"x")[..10]), Err(BadFraming));
    }

    #[test]
    fn early_protected_records_are_budgeted() {
        let hello = record(22, 0, &[1; 50]);
        let fin = record(22, 1, &[2; 40]);
        let mut budget = 2 * fin.len() + 10;
        let both = [hello.clone(), fin.clone()].concat();
        assert_eq!(
            &budget_early_records(&both, &mut budget).unwrap().unwrap()[..],
            &both[..]
        );
        assert_eq!(&budget_early_records(&fin, &mut budget).unwrap().unwrap()[..], &fin[..]);
        assert_eq!(budget, 10);
        // Over budget: epoch-1 records go, epoch-0 records still pass.
        assert_eq!(
            &budget_early_records(&both, &mut budget).unwrap().unwrap()[..],
            &hello[..]
        );
        assert_eq!(budget_early_records(&fin, &mut budget), Ok(None));
        assert_eq!(budget, 10);
        assert_eq!(budget_early_records(&both[..20], &mut budget), Err(BadFraming));
    }
}

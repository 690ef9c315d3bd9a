//! The byte encoding of stored records: a version byte, then fields in a fixed order with
//! little-endian integers and length-prefixed strings and bytes.
//!
//! Decoding never trusts the bytes: every length is checked against what is left, every enum
//! value against its range, every topic re-validated, and trailing bytes are an error. A record
//! that does not decode is reported as corruption, never unwrapped.

use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;
use unigate_pubsub::{Message, Origin, PayloadFormat, Properties, Protocol, QoS, Topic};

use super::{QueueEntry, SessionRecord, StoreError, StoredSubOptions, StoredWill};

const VERSION: u8 = 1;

/// Appends fields.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn opt_u32(&mut self, v: Option<u32>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.u32(v);
            }
            None => self.u8(0),
        }
    }
    fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.u64(v);
            }
            None => self.u8(0),
        }
    }
    fn opt_str(&mut self, v: Option<&str>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.str(v);
            }
            None => self.u8(0),
        }
    }
}

/// Reads fields, checking every length.
struct Reader<'a>(&'a [u8]);

type R<T> = Result<T, StoreError>;

const TRUNCATED: StoreError = StoreError::Decode("truncated record");

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        if self.0.len() < n {
            return Err(TRUNCATED);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> R<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> R<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> R<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> R<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> R<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| StoreError::Decode("string is not UTF-8"))
    }
    fn flag(&mut self) -> R<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(StoreError::Decode("bad flag")),
        }
    }
    fn opt_u32(&mut self) -> R<Option<u32>> {
        Ok(if self.flag()? { Some(self.u32()?) } else { None })
    }
    fn opt_u64(&mut self) -> R<Option<u64>> {
        Ok(if self.flag()? { Some(self.u64()?) } else { None })
    }
    fn opt_str(&mut self) -> R<Option<&'a str>> {
        Ok(if self.flag()? { Some(self.str()?) } else { None })
    }
    fn qos(&mut self) -> R<QoS> {
        QoS::try_from(self.u8()?).map_err(|_| StoreError::Decode("bad QoS"))
    }
    fn version(&mut self) -> R<()> {
        if self.u8()? != VERSION {
            return Err(StoreError::Decode("unknown record version"));
        }
        Ok(())
    }
    fn end(&self) -> R<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Decode("trailing bytes"))
        }
    }
}

fn protocol_code(p: Protocol) -> u8 {
    match p {
        Protocol::Mqtt => 1,
        Protocol::MqttWs => 2,
        Protocol::Coap => 3,
        Protocol::Lwm2m => 4,
        Protocol::Http => 5,
        Protocol::System => 6,
    }
}

fn protocol_from(c: u8) -> R<Option<Protocol>> {
    Ok(match c {
        0 => None,
        1 => Some(Protocol::Mqtt),
        2 => Some(Protocol::MqttWs),
        3 => Some(Protocol::Coap),
        4 => Some(Protocol::Lwm2m),
        5 => Some(Protocol::Http),
        6 => Some(Protocol::System),
        _ => return Err(StoreError::Decode("bad protocol")),
    })
}

fn write_message(w: &mut Writer, m: &Message) {
    w.str(m.topic.as_str());
    w.bytes(&m.payload);
    w.u8(m.qos.as_u8());
    w.u8(u8::from(m.retain));
    w.opt_u64(m.expires_at);
    let p = &m.properties;
    w.u8(match p.payload_format {
        None => 0,
        Some(PayloadFormat::Unspecified) => 1,
        Some(PayloadFormat::Utf8) => 2,
    });
    w.opt_str(p.content_type.as_deref());
    w.opt_str(p.response_topic.as_ref().map(|t| t.as_str()));
    match &p.correlation_data {
        Some(b) => {
            w.u8(1);
            w.bytes(b);
        }
        None => w.u8(0),
    }
    w.u32(p.user_properties.len() as u32);
    for (k, v) in &p.user_properties {
        w.str(k);
        w.str(v);
    }
    let o = &m.origin;
    w.u8(o.protocol.map_or(0, protocol_code));
    w.opt_str(o.client_id.as_deref());
    w.opt_str(o.username.as_deref());
    w.opt_str(o.listener.as_deref());
    w.opt_str(o.peer.map(|p| p.to_string()).as_deref());
}

fn read_message(r: &mut Reader<'_>) -> R<Message> {
    let topic = Topic::new(r.str()?).map_err(|_| StoreError::Decode("bad topic"))?;
    let payload = Bytes::copy_from_slice(r.bytes()?);
    let qos = r.qos()?;
    let retain = r.flag()?;
    let expires_at = r.opt_u64()?;
    let payload_format = match r.u8()? {
        0 => None,
        1 => Some(PayloadFormat::Unspecified),
        2 => Some(PayloadFormat::Utf8),
        _ => return Err(StoreError::Decode("bad payload format")),
    };
    let content_type = r.opt_str()?.map(str::to_string);
    let response_topic = match r.opt_str()? {
        Some(t) => Some(Topic::new(t).map_err(|_| StoreError::Decode("bad response topic"))?),
        None => None,
    };
    let correlation_data = if r.flag()? {
        Some(Bytes::copy_from_slice(r.bytes()?))
    } else {
        None
    };
    let n = r.u32()? as usize;
    // Each pair takes at least 8 bytes: refuse a count the record cannot hold before allocating.
    if n > r.0.len() / 8 {
        return Err(TRUNCATED);
    }
    let mut user_properties = Vec::with_capacity(n);
    for _ in 0..n {
        user_properties.push((r.str()?.to_string(), r.str()?.to_string()));
    }
    let protocol = protocol_from(r.u8()?)?;
    let client_id = r.opt_str()?.map(Arc::from);
    let username = r.opt_str()?.map(Arc::from);
    let listener = r.opt_str()?.map(Arc::from);
    let peer = r.opt_str()?.and_then(|p| p.parse().ok());
    Ok(Message {
        topic,
        payload,
        qos,
        retain,
        properties: Properties {
            payload_format,
            content_type,
            response_topic,
            correlation_data,
            user_properties,
        },
        origin: Origin {
            protocol,
            client_id,
            username,
            peer,
            listener,
        },
        expires_at,
    })
}

/// Encodes a message.
pub fn encode_message(m: &Message) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(32 + m.topic.as_str().len() + m.payload.len()));
    w.u8(VERSION);
    write_message(&mut w, m);
    w.0
}

/// Decodes a message.
pub fn decode_message(b: &[u8]) -> R<Message> {
    let mut r = Reader(b);
    r.version()?;
    let m = read_message(&mut r)?;
    r.end()?;
    Ok(m)
}

/// Encodes a session record.
pub fn encode_session(s: &SessionRecord) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(VERSION);
    w.str(&s.client_id);
    w.u32(s.expiry_interval);
    w.opt_u64(s.disconnected_at);
    w.u32(s.subscriptions.len() as u32);
    for (f, o) in &s.subscriptions {
        w.str(f);
        w.u8(o.qos.as_u8());
        w.u8(u8::from(o.no_local));
        w.u8(u8::from(o.retain_as_published));
        w.opt_u32(o.sub_id);
    }
    match &s.will {
        Some(will) => {
            w.u8(1);
            write_message(&mut w, &will.msg);
            w.u32(will.delay);
            w.opt_u32(will.expiry);
            w.opt_u64(will.due_at);
        }
        None => w.u8(0),
    }
    w.0
}

/// Decodes a session record.
pub fn decode_session(b: &[u8]) -> R<SessionRecord> {
    let mut r = Reader(b);
    r.version()?;
    let client_id = Arc::from(r.str()?);
    let expiry_interval = r.u32()?;
    let disconnected_at = r.opt_u64()?;
    let n = r.u32()? as usize;
    if n > r.0.len() / 8 {
        return Err(TRUNCATED);
    }
    let mut subscriptions = Vec::with_capacity(n);
    for _ in 0..n {
        let f = r.str()?.to_string();
        let opts = StoredSubOptions {
            qos: r.qos()?,
            no_local: r.flag()?,
            retain_as_published: r.flag()?,
            sub_id: r.opt_u32()?,
        };
        subscriptions.push((f, opts));
    }
    let will = if r.flag()? {
        Some(StoredWill {
            msg: Arc::new(read_message(&mut r)?),
            delay: r.u32()?,
            expiry: r.opt_u32()?,
            due_at: r.opt_u64()?,
        })
    } else {
        None
    };
    r.end()?;
    Ok(SessionRecord {
        client_id,
        expiry_interval,
        disconnected_at,
        subscriptions,
        will,
    })
}

/// Encodes a queue entry.
pub fn encode_entry(e: &QueueEntry) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(24));
    w.u8(VERSION);
    w.opt_u64(e.msg_id);
    w.u8(e.qos.as_u8());
    w.u8(u8::from(e.retain));
    w.u16(e.sub_ids.len() as u16);
    for id in &e.sub_ids {
        w.u32(*id);
    }
    w.opt_str(e.shared.as_deref());
    w.0
}

/// Decodes a queue entry.
pub fn decode_entry(b: &[u8]) -> R<QueueEntry> {
    let mut r = Reader(b);
    r.version()?;
    let msg_id = r.opt_u64()?;
    let qos = r.qos()?;
    let retain = r.flag()?;
    let n = r.u16()? as usize;
    let mut sub_ids = SmallVec::new();
    for _ in 0..n {
        sub_ids.push(r.u32()?);
    }
    let shared = r.opt_str()?.map(str::to_string);
    r.end()?;
    Ok(QueueEntry {
        msg_id,
        qos,
        retain,
        sub_ids,
        shared,
    })
}

/// The message id a stored entry references, without decoding the rest.
pub fn entry_msg_id(b: &[u8]) -> R<Option<u64>> {
    let mut r = Reader(b);
    r.version()?;
    r.opt_u64()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    pub(crate) fn sample() -> Message {
        let mut m = Message::new(Topic::new("a/b").unwrap(), Bytes::from_static(b"hello"));
        m.qos = QoS::ExactlyOnce;
        m.retain = true;
        m.expires_at = Some(123);
        m.properties.payload_format = Some(PayloadFormat::Utf8);
        m.properties.content_type = Some("text/plain".into());
        m.properties.response_topic = Some(Topic::new("r").unwrap());
        m.properties.correlation_data = Some(Bytes::from_static(b"c"));
        m.properties.user_properties = vec![("k".into(), "v".into())];
        m.origin.protocol = Some(Protocol::Mqtt);
        m.origin.client_id = Some("pub".into());
        m.origin.peer = Some("127.0.0.1:5".parse().unwrap());
        m
    }

    #[test]
    fn message_round_trip() {
        let m = sample();
        assert_eq!(decode_message(&encode_message(&m)).unwrap(), m);
    }

    #[test]
    fn session_round_trip() {
        let s = SessionRecord {
            client_id: "c".into(),
            expiry_interval: 60,
            disconnected_at: Some(5),
            subscriptions: vec![(
                "$share/g/a/#".into(),
                StoredSubOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: false,
                    sub_id: Some(7),
                },
            )],
            will: Some(StoredWill {
                msg: Arc::new(sample()),
                delay: 5,
                expiry: Some(9),
                due_at: None,
            }),
        };
        assert_eq!(decode_session(&encode_session(&s)).unwrap(), s);
    }

    #[test]
    fn truncated_and_garbage_records_are_errors() {
        let b = encode_message(&sample());
        for n in 0..b.len() {
            assert!(decode_message(&b[..n]).is_err(), "prefix of {n} bytes decoded");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(decode_message(&long).is_err());
        assert!(decode_session(&[1, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_entry(&[9]).is_err());
    }
}

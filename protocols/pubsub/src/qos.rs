//! Quality of service, the delivery guarantee shared by every protocol (MQTT 5 §4.3).

use crate::error::InvalidQoS;

/// The delivery guarantee of a message or a subscription (MQTT 5 §4.3).
///
/// Ordered, so that the QoS of a delivery is `published.min(granted)` (MQTT 5 §3.8.4). CoAP maps
/// NON to [`QoS::AtMostOnce`] and CON to [`QoS::AtLeastOnce`] by default; HTTP publishes carry it
/// as a parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum QoS {
    /// QoS 0: fire and forget, no acknowledgement.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: acknowledged, may be delivered more than once.
    AtLeastOnce = 1,
    /// QoS 2: delivered exactly once through a two-step handshake.
    ExactlyOnce = 2,
}

impl QoS {
    /// The number used on the wire (0, 1 or 2).
    #[must_use]
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

impl TryFrom<u8> for QoS {
    type Error = InvalidQoS;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        match value {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            other => Err(InvalidQoS(other)),
        }
    }
}

impl From<QoS> for u8 {
    fn from(qos: QoS) -> u8 {
        qos.as_u8()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects() {
        for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            assert_eq!(QoS::try_from(q.as_u8()), Ok(q));
            assert_eq!(u8::from(q), q.as_u8());
        }
        assert_eq!(QoS::try_from(3), Err(InvalidQoS(3)));
        assert_eq!(QoS::try_from(255), Err(InvalidQoS(255)));
        assert!(InvalidQoS(3).to_string().contains("MQTT-3.3.1-4"));
    }

    #[test]
    fn ordered_so_min_is_the_delivery_qos() {
        assert!(QoS::AtMostOnce < QoS::AtLeastOnce);
        assert!(QoS::AtLeastOnce < QoS::ExactlyOnce);
        assert_eq!(QoS::ExactlyOnce.min(QoS::AtLeastOnce), QoS::AtLeastOnce);
        assert_eq!(QoS::default(), QoS::AtMostOnce);
    }
}

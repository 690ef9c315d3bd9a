//! Transmission parameters and per-peer limits, shared by every [`crate::Peer`] through an
//! `Arc` (the per-peer state stays small).

use std::time::Duration;

use crate::error::ConfigError;

/// CoAP transmission parameters (RFC 7252 §4.8) and the per-peer memory limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// ACK_TIMEOUT: the first retransmission of a CON happens after a random time in
    /// `[ack_timeout, ack_timeout * ack_random_factor]` (RFC 7252 §4.8). Default 2 s.
    pub ack_timeout: Duration,
    /// ACK_RANDOM_FACTOR (RFC 7252 §4.8). Default 1.5.
    pub ack_random_factor: f64,
    /// MAX_RETRANSMIT: retransmissions of a CON before giving up (RFC 7252 §4.8). Default 4.
    pub max_retransmit: u32,
    /// EXCHANGE_LIFETIME (RFC 7252 §4.8.2): how long an inbound message id is remembered for
    /// deduplication, and how long idle block-wise state is kept. Default 247 s.
    pub exchange_lifetime: Duration,
    /// Preferred Block2 (and largest accepted Block1) size: a power of two in 16..=1024
    /// (RFC 7959 §2.2). Default 1024.
    pub block_size: usize,
    /// Largest reassembled Block1 request body, and largest response body served; beyond it
    /// requests get 4.13 with Size1 (RFC 7959 §2.9.3) and responses become 5.00. Default 64 KiB.
    pub max_body: usize,
    /// Inbound message ids remembered per peer; the oldest is forgotten first. Default 64.
    pub max_dedup_entries: usize,
    /// Concurrent Block1 reassemblies per peer; the least recently active is dropped first.
    /// Default 4.
    pub max_block1_transfers: usize,
    /// Large response bodies cached per peer for Block2 follow-up requests (least recently used
    /// dropped first). 0 disables the cache: follow-ups then reach the application. Default 4.
    pub max_block2_cache: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ack_timeout: Duration::from_secs(2),
            ack_random_factor: 1.5,
            max_retransmit: 4,
            exchange_lifetime: Duration::from_secs(247),
            block_size: 1024,
            max_body: 64 * 1024,
            max_dedup_entries: 64,
            max_block1_transfers: 4,
            max_block2_cache: 4,
        }
    }
}

impl Config {
    /// Checks every field against its documented range. A [`crate::Peer`] given an invalid
    /// configuration does not panic, but its timing and block sizes are then clamped in
    /// unspecified ways.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ack_timeout < Duration::from_millis(1) || self.ack_timeout > Duration::from_secs(3600) {
            return Err(ConfigError::AckTimeout);
        }
        if !(1.0..=10.0).contains(&self.ack_random_factor) {
            return Err(ConfigError::AckRandomFactor);
        }
        if self.max_retransmit > 20 {
            return Err(ConfigError::MaxRetransmit);
        }
        if self.exchange_lifetime < Duration::from_secs(1) || self.exchange_lifetime > Duration::from_secs(86_400) {
            return Err(ConfigError::ExchangeLifetime);
        }
        if !self.block_size.is_power_of_two() || !(16..=1024).contains(&self.block_size) {
            return Err(ConfigError::BlockSize);
        }
        if !(1..=16 * 1024 * 1024).contains(&self.max_body) {
            return Err(ConfigError::MaxBody);
        }
        if self.max_dedup_entries == 0 {
            return Err(ConfigError::Zero("max_dedup_entries"));
        }
        if self.max_block1_transfers == 0 {
            return Err(ConfigError::Zero("max_block1_transfers"));
        }
        Ok(())
    }

    /// SZX of `block_size` (size = 2^(szx+4)), clamped to 0..=6.
    pub fn block_szx(&self) -> u8 {
        szx_for_size(self.block_size)
    }
}

/// The largest SZX whose block size does not exceed `size` (0 for anything below 32).
pub(crate) fn szx_for_size(size: usize) -> u8 {
    let mut szx = 0u8;
    while szx < 6 && (16usize << (szx + 1)) <= size {
        szx += 1;
    }
    szx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_rfc_values() {
        let c = Config::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.ack_timeout, Duration::from_secs(2));
        assert_eq!(c.exchange_lifetime, Duration::from_secs(247));
        assert_eq!(c.block_szx(), 6);
    }

    #[test]
    fn invalid_values_are_refused() {
        let bad = [
            Config {
                block_size: 1000,
                ..Config::default()
            },
            Config {
                block_size: 2048,
                ..Config::default()
            },
            Config {
                ack_random_factor: 0.5,
                ..Config::default()
            },
            Config {
                ack_random_factor: f64::NAN,
                ..Config::default()
            },
            Config {
                ack_timeout: Duration::ZERO,
                ..Config::default()
            },
            Config {
                max_retransmit: 64,
                ..Config::default()
            },
            Config {
                max_dedup_entries: 0,
                ..Config::default()
            },
            Config {
                max_body: 0,
                ..Config::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    #[test]
    fn szx_mapping() {
        assert_eq!(szx_for_size(16), 0);
        assert_eq!(szx_for_size(17), 0);
        assert_eq!(szx_for_size(64), 2);
        assert_eq!(szx_for_size(1024), 6);
        assert_eq!(szx_for_size(usize::MAX), 6);
        assert_eq!(szx_for_size(0), 0);
    }
}

//! The LwM2M server: `[[listeners]]` with `protocol = "lwm2m"` (UDP 5783, DTLS 5784).
//!
//! Devices register, update and de-register through the registration interface (`/rd`); the
//! server reads, writes, executes, observes … them through the device management interface.
//! Both meet the namespace in EMQX's shape (see `unigate_translators::lwm2m`): events on
//! `lwm2m/{ep}/up/…`, commands from `lwm2m/{ep}/dn`, one response per command on
//! `up/resp`. The HTTP API drives the same commands (`/api/v1/lwm2m/…`).
//!
//! Every LwM2M listener of the server shares one [`Hub`]: which listener holds which
//! endpoint, the object registry, the topic scheme, and the single broker session that
//! receives commands (owned by the first listener, which hands each command to the listener
//! holding its endpoint, or answers 4.04 when none does).

pub mod listener;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use dashmap::DashMap;
use serde::Deserialize;
use unigate_lwm2m::Registry;
use unigate_translators::lwm2m::TopicScheme;

/// `[lwm2m.topics]`: topic suffixes under the mount point.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Lwm2mTopics {
    /// Commands to the device.
    pub command: String,
    /// Command responses.
    pub response: String,
    /// Observation notifications.
    pub notify: String,
    /// Registrations.
    pub register: String,
    /// Registration updates.
    pub update: String,
    /// De-registrations and expiries.
    pub deregister: String,
    /// Send (`/dp`).
    pub send: String,
}

impl Default for Lwm2mTopics {
    fn default() -> Self {
        let [command, response, notify, register, update, deregister, send] =
            unigate_translators::lwm2m::DEFAULT_SUFFIXES.map(str::to_owned);
        Lwm2mTopics {
            command,
            response,
            notify,
            register,
            update,
            deregister,
            send,
        }
    }
}

/// `[lwm2m]`: settings of every LwM2M listener. CoAP transmission parameters (ACK timeout,
/// retransmissions, block size) come from `[coap]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Lwm2mConfig {
    /// Prefix of every LwM2M topic; `${endpoint}` (a whole level) is the endpoint name.
    pub mount_point: String,
    /// Topic suffixes.
    pub topics: Lwm2mTopics,
    /// Lifetimes below this are raised to it.
    #[serde(with = "humantime_serde")]
    pub min_lifetime: Duration,
    /// Lifetimes above this are lowered to it.
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// A registration lives this much longer than its lifetime before it expires (a late
    /// Update over a slow link still finds it).
    #[serde(with = "humantime_serde")]
    pub lifetime_grace: Duration,
    /// How long a queue-mode device is reachable after it last sent something (LwM2M 1.1
    /// §6.5: the client stays awake MAX_TRANSMIT_WAIT, 93 s by default).
    #[serde(with = "humantime_serde")]
    pub queue_window: Duration,
    /// Commands waiting per device (queue mode, or behind the one in flight), at most; more
    /// are answered 5.03 at once.
    pub max_queued: usize,
    /// A queued command not sent within this long is answered 5.04.
    #[serde(with = "humantime_serde")]
    pub queue_ttl: Duration,
    /// A command sent and not answered within this long is answered 5.04.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Observations per device, at most.
    pub max_observations: usize,
    /// Paths observed on every registration (those whose object the device lists).
    pub auto_observe: Vec<String>,
    /// A folder of OMA DDF XML files added to the built-in objects.
    pub ddf_dir: Option<PathBuf>,
    /// How long an HTTP command waits for its answer.
    #[serde(with = "humantime_serde")]
    pub http_timeout: Duration,
}

impl Default for Lwm2mConfig {
    fn default() -> Self {
        Lwm2mConfig {
            mount_point: unigate_translators::lwm2m::DEFAULT_MOUNT.into(),
            topics: Lwm2mTopics::default(),
            min_lifetime: Duration::from_secs(15),
            max_lifetime: Duration::from_secs(30 * 86_400),
            lifetime_grace: Duration::from_secs(15),
            queue_window: Duration::from_secs(93),
            max_queued: 64,
            queue_ttl: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(60),
            max_observations: 64,
            auto_observe: Vec::new(),
            ddf_dir: None,
            http_timeout: Duration::from_secs(30),
        }
    }
}

impl Lwm2mConfig {
    /// The topic scheme.
    pub fn scheme(&self) -> Result<TopicScheme, unigate_translators::lwm2m::SchemeError> {
        let t = &self.topics;
        TopicScheme::new(
            &self.mount_point,
            [
                t.command.as_str(),
                &t.response,
                &t.notify,
                &t.register,
                &t.update,
                &t.deregister,
                &t.send,
            ],
        )
    }

    /// The object registry: the built-in objects plus `ddf_dir`.
    pub fn registry(&self) -> Result<Registry, String> {
        let mut r = Registry::core();
        if let Some(dir) = &self.ddf_dir {
            r.load_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Ok(r)
    }

    /// Checks values serde cannot: (key, problem).
    pub fn check(&self) -> Result<(), (String, String)> {
        if let Err(e) = self.scheme() {
            return Err(("lwm2m.mount_point".into(), e.to_string()));
        }
        if self.min_lifetime > self.max_lifetime || self.min_lifetime.is_zero() {
            return Err((
                "lwm2m.min_lifetime".into(),
                "must be more than 0 and at most max_lifetime".into(),
            ));
        }
        for (k, d) in [
            ("queue_window", self.queue_window),
            ("queue_ttl", self.queue_ttl),
            ("request_timeout", self.request_timeout),
            ("http_timeout", self.http_timeout),
        ] {
            if d.is_zero() {
                return Err((format!("lwm2m.{k}"), "must be more than 0".into()));
            }
        }
        if self.max_queued == 0 || self.max_observations == 0 {
            return Err((
                "lwm2m.max_queued".into(),
                "max_queued and max_observations must be at least 1".into(),
            ));
        }
        for p in &self.auto_observe {
            if p.parse::<unigate_lwm2m::Path>().is_err() {
                return Err(("lwm2m.auto_observe".into(), format!("{p:?} is not an LwM2M path")));
            }
        }
        if let Err(e) = self.registry() {
            return Err(("lwm2m.ddf_dir".into(), e));
        }
        Ok(())
    }
}

/// What every LwM2M listener shares.
pub struct Hub {
    /// Settings.
    pub config: Lwm2mConfig,
    /// Topics.
    pub scheme: TopicScheme,
    /// Object definitions.
    pub registry: Arc<Registry>,
    /// Which listener holds each registered endpoint.
    pub devices: DashMap<String, Addr<listener::Lwm2mListener>>,
    /// Every listener, the first of which owns the command subscription.
    pub listeners: parking_lot::Mutex<Vec<Addr<listener::Lwm2mListener>>>,
}

impl Hub {
    /// A hub from the `[lwm2m]` settings (checked by `Config::validate`).
    pub fn new(config: Lwm2mConfig) -> anyhow::Result<Arc<Hub>> {
        let scheme = config.scheme()?;
        let registry = Arc::new(config.registry().map_err(anyhow::Error::msg)?);
        Ok(Arc::new(Hub {
            config,
            scheme,
            registry,
            devices: DashMap::new(),
            listeners: parking_lot::Mutex::new(Vec::new()),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_check_and_scheme() {
        let c = Lwm2mConfig::default();
        c.check().unwrap();
        assert_eq!(c.scheme().unwrap(), TopicScheme::default());
        let bad = Lwm2mConfig {
            mount_point: "lwm2m/".into(),
            ..Lwm2mConfig::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "lwm2m.mount_point");
        let bad = Lwm2mConfig {
            auto_observe: vec!["/3/x".into()],
            ..Lwm2mConfig::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "lwm2m.auto_observe");
    }
}

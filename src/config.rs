//! Configuration: one TOML file (`unigate.toml`), environment overrides, embedded defaults.
//!
//! Unknown keys are errors (`deny_unknown_fields` everywhere) and every error names the key path,
//! because a silently ignored typo in a security setting is worse than a refused start.
//!
//! Environment overrides are applied to the parsed TOML tree before it is checked:
//! `UNIGATE__MQTT__MAX_QOS=1` sets `mqtt.max_qos`, and listeners are addressed by name:
//! `UNIGATE__LISTENERS__MQTT__BIND=0.0.0.0:1883` sets `bind` of the listener named `mqtt`.
//! A value is read as TOML when it parses as one (numbers, booleans, `"…"` strings), else as a string.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Errors from loading a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key has a wrong type or value, or is unknown.
    #[error("{path}: at `{key}`: {message}")]
    Invalid {
        /// The file (or `<defaults>`).
        path: String,
        /// The dotted key path.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// An environment override could not be applied.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The listeners to start. Empty: the embedded defaults.
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    /// MQTT session and feature settings shared by all MQTT listeners.
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// CoAP gateway settings shared by all CoAP listeners.
    #[serde(default)]
    pub coap: crate::coap::CoapConfig,
    /// `[lwm2m]`: settings of every LwM2M listener.
    #[serde(default)]
    pub lwm2m: crate::lwm2m::Lwm2mConfig,
    /// HTTP settings shared by all HTTP listeners.
    #[serde(default)]
    pub http: crate::http::HttpConfig,
    /// Number of worker threads for connections; 0 = one per core.
    #[serde(default)]
    pub workers: usize,
    /// Publish broker statistics under `$SYS/broker/…` at this interval; "0s" disables.
    #[serde(default = "default_sys_interval", with = "humantime_serde")]
    pub sys_interval: Duration,
    /// Publish the wills of connected clients when the server is stopped gracefully.
    #[serde(default)]
    pub publish_wills_on_shutdown: bool,
    /// Auth chains and authenticators.
    #[serde(default)]
    pub auth: crate::auth::AuthConfig,
    /// Authorisation rules. Absent: everything is allowed; present: `no_match` decides what no
    /// rule matches.
    #[serde(default)]
    pub acl: Option<unigate_auth::acl::AclConfig>,
    /// Who may use the management API. Absent: loopback peers only, anonymously.
    #[serde(default)]
    pub management: Option<crate::http::mgmt::ManagementConfig>,
    /// Where retained messages and persistent sessions are kept (`[storage]`).
    #[serde(default)]
    pub storage: StorageConfig,
    /// The auth chains the check built (to validate every authenticator's files), for the
    /// server to take: a password file of 100,000 users is then read and parsed once at start
    /// and at each reload, not twice.
    #[serde(skip)]
    built_chains: BuiltChains,
}

/// Chains built by [`Config`]'s check, taken once; with the `[auth]` they were built from (its
/// `Debug` form), so that a caller who changes `auth` after parsing gets chains of the new one.
/// `Debug` redacts secrets: a change of a secret alone (same length) is not seen, so code that
/// edits `auth` after parsing should not rely on this to pick up a new secret.
#[derive(Clone, Default)]
struct BuiltChains(std::sync::Arc<parking_lot::Mutex<Option<(String, crate::auth::Chains)>>>);

impl std::fmt::Debug for BuiltChains {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BuiltChains")
    }
}

impl Config {
    /// The auth chains of this configuration: those its check built, the first time, else
    /// built now.
    pub fn take_chains(&self) -> Result<crate::auth::Chains, crate::auth::AuthSetupError> {
        match self.built_chains.0.lock().take() {
            Some((from, chains)) if from == format!("{:?}", self.auth) => Ok(chains),
            _ => crate::auth::Chains::build(&self.auth),
        }
    }
}

/// Which store keeps retained messages and persistent sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorageKind {
    /// The embedded redb file at `path`: survives restarts and `kill -9`.
    Embedded,
    /// Nothing on disk: everything is lost when the process ends.
    Memory,
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `embedded` or `memory`. Unset: `unigate serve` uses `embedded`; a server started as a
    /// library (`server::start`, the tests) uses `memory`.
    pub kind: Option<StorageKind>,
    /// The store's directory (the file is `{path}/unigate.redb`).
    pub path: std::path::PathBuf,
    /// Sync every commit to disk. `false` trades durability for speed: commits are made durable
    /// once a second (and after a second without traffic, and at a clean stop), so any crash —
    /// of the process too: redb rolls back to the last durable commit — may lose about the
    /// last second of acknowledged messages.
    pub fsync: bool,
    /// How long the writer waits for more operations after the first one before committing
    /// (group commit). `0s`: commit what is queued at once, the next batch forming meanwhile.
    #[serde(with = "humantime_serde")]
    pub commit_window: Duration,
    /// Operations at most per commit.
    pub max_batch: usize,
    /// The redb page cache in bytes.
    pub cache_size: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            kind: None,
            path: std::path::PathBuf::from("data"),
            fsync: true,
            commit_window: Duration::ZERO,
            max_batch: 4096,
            cache_size: 64 * 1024 * 1024,
        }
    }
}

fn default_sys_interval() -> Duration {
    Duration::from_secs(10)
}

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListenerProtocol {
    /// MQTT 3.1 / 3.1.1 / 5.0 over TCP.
    Mqtt,
    /// CoAP over UDP (RFC 7252), the EMQX-compatible pub/sub gateway.
    Coap,
    /// HTTP/1.1 and HTTP/2: the publish API, Server-Sent Events, MQTT over WebSocket at
    /// `/mqtt`, management, metrics.
    Http,
    /// MQTT over WebSocket only (`/mqtt`).
    MqttWs,
    /// The LwM2M server (registration and device management over CoAP, UDP or DTLS).
    Lwm2m,
}

impl std::fmt::Display for ListenerProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenerProtocol::Mqtt => f.write_str("mqtt"),
            ListenerProtocol::Coap => f.write_str("coap"),
            ListenerProtocol::Http => f.write_str("http"),
            ListenerProtocol::MqttWs => f.write_str("mqtt-ws"),
            ListenerProtocol::Lwm2m => f.write_str("lwm2m"),
        }
    }
}

/// One `[[listeners]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Unique name, used in logs, metrics and environment overrides.
    pub name: String,
    /// The protocol.
    pub protocol: ListenerProtocol,
    /// Address and port to bind (port 0: the OS picks one).
    pub bind: SocketAddr,
    /// TLS: certificate, key, client certificates. With it, an `mqtt` listener speaks MQTT over
    /// TLS.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
    /// The auth chain (a name under `[auth.chains]`); absent: `auth.default_chain`, else
    /// anonymous clients are accepted.
    #[serde(default)]
    pub auth: Option<String>,
    /// Per-listener limits.
    #[serde(default)]
    pub limits: Limits,
}

/// Per-listener limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open connections at most; further ones are closed at once.
    pub max_connections: usize,
    /// Largest MQTT packet accepted (whole packet, bytes); larger ones close the connection (0x95).
    pub max_packet_size: u32,
    /// A connection that sends no CONNECT within this time is closed.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// QoS 1/2 messages sent to one client and not yet acknowledged, at most (the client's
    /// Receive Maximum lowers it).
    pub max_inflight: u16,
    /// QoS 1/2 messages a client may have unacknowledged towards us (our Receive Maximum).
    pub max_incoming_inflight: u16,
    /// Messages queued for one session (online backlog or offline), at most.
    pub max_queued_messages: usize,
    /// Topic levels at most, in topic names and filters.
    pub max_topic_levels: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1_000_000,
            max_packet_size: 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            max_inflight: 32,
            max_incoming_inflight: 1024,
            max_queued_messages: 100_000,
            max_topic_levels: 128,
        }
    }
}

/// What a full session queue drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum QueueDropPolicy {
    /// Drop the oldest queued message to make room (QoS 0 messages go first either way).
    #[default]
    Oldest,
    /// Drop the new message.
    Newest,
}

/// MQTT settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Highest QoS granted and accepted (0, 1 or 2).
    pub max_qos: u8,
    /// Whether retained messages are supported.
    pub retain_available: bool,
    /// Whether wildcard subscriptions are allowed.
    pub wildcard_subscriptions: bool,
    /// Whether shared subscriptions (`$share/{group}/{filter}`) are allowed.
    pub shared_subscriptions: bool,
    /// Whether subscription identifiers are supported.
    pub subscription_identifiers: bool,
    /// Topic aliases a client may use towards us (our Topic Alias Maximum); 0 disables.
    pub topic_alias_maximum: u16,
    /// Largest session expiry a client may ask for; absent: no cap (MQTT 3.1.1 persistent
    /// sessions then never expire).
    #[serde(with = "humantime_serde")]
    pub max_session_expiry: Option<Duration>,
    /// Keep alive imposed on clients (Server Keep Alive, MQTT 5); absent: the client's own.
    pub server_keep_alive: Option<u16>,
    /// Whether QoS 0 messages are queued for offline persistent sessions.
    pub queue_qos0_offline: bool,
    /// What a full queue drops.
    pub queue_drop: QueueDropPolicy,
    /// Back-pressure: when a connected subscriber's queue reaches this many messages while it
    /// is still taking them, its publishers stop being read until it has caught up, so that
    /// acknowledged messages are not dropped under overload. 0 turns it off. A subscriber that
    /// takes nothing for 500 ms slows nobody down.
    pub backpressure_queue: usize,
    /// What an MQTT 3.1.1 client's PUBLISH refused by the ACL gets (3.1.1 has no way to say
    /// no): `acknowledge` (dropped, acknowledged so it is not resent) or `disconnect`.
    pub denied_publish_v3: DeniedPublishV3,
}

/// See [`MqttConfig::denied_publish_v3`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DeniedPublishV3 {
    /// Drop it and acknowledge it.
    #[default]
    Acknowledge,
    /// Drop it and close the connection.
    Disconnect,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            max_qos: 2,
            retain_available: true,
            wildcard_subscriptions: true,
            shared_subscriptions: true,
            subscription_identifiers: true,
            topic_alias_maximum: 64,
            max_session_expiry: None,
            server_keep_alive: None,
            queue_qos0_offline: false,
            queue_drop: QueueDropPolicy::Oldest,
            backpressure_queue: 1000,
            denied_publish_v3: DeniedPublishV3::Acknowledge,
        }
    }
}

impl Config {
    /// The embedded defaults: MQTT on 127.0.0.1:1883, anonymous clients allowed.
    pub fn defaults() -> Config {
        Config {
            listeners: Vec::new(),
            mqtt: MqttConfig::default(),
            coap: crate::coap::CoapConfig::default(),
            lwm2m: crate::lwm2m::Lwm2mConfig::default(),
            http: crate::http::HttpConfig::default(),
            workers: 0,
            sys_interval: default_sys_interval(),
            publish_wills_on_shutdown: false,
            auth: crate::auth::AuthConfig::default(),
            acl: None,
            management: None,
            storage: StorageConfig::default(),
            built_chains: BuiltChains::default(),
        }
    }

    /// The default listeners, bound to `host` (127.0.0.1 unless `--bind` says otherwise).
    pub fn default_listeners(host: std::net::IpAddr) -> Vec<ListenerConfig> {
        vec![
            ListenerConfig {
                name: "mqtt".into(),
                protocol: ListenerProtocol::Mqtt,
                bind: SocketAddr::new(host, 1883),
                tls: None,
                auth: None,
                limits: Limits::default(),
            },
            ListenerConfig {
                name: "coap".into(),
                protocol: ListenerProtocol::Coap,
                bind: SocketAddr::new(host, 5683),
                tls: None,
                auth: None,
                limits: Limits::default(),
            },
            ListenerConfig {
                name: "lwm2m".into(),
                protocol: ListenerProtocol::Lwm2m,
                bind: SocketAddr::new(host, 5783),
                tls: None,
                auth: None,
                limits: Limits::default(),
            },
            ListenerConfig {
                name: "mqtt-ws".into(),
                protocol: ListenerProtocol::MqttWs,
                bind: SocketAddr::new(host, 8083),
                tls: None,
                auth: None,
                limits: Limits::default(),
            },
            ListenerConfig {
                name: "http".into(),
                protocol: ListenerProtocol::Http,
                bind: SocketAddr::new(host, 8080),
                tls: None,
                auth: None,
                limits: Limits::default(),
            },
        ]
    }

    /// Loads a file, applies `UNIGATE__…` overrides from `env`, and checks it.
    pub fn load(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown, env)
    }

    /// Parses TOML text, applies overrides and checks it. `origin` names the text in errors.
    pub fn parse(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        // The parser's own rendering quotes the offending line, which may hold a secret (a JWT
        // `secret = "…"`): report the position and the message only.
        let mut tree: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let at = e.span().map(|span| {
                let before = text.get(..span.start).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!("line {line}, column {column}: ")
            });
            ConfigError::Syntax {
                path: origin.to_string(),
                message: format!(
                    "{}{}",
                    at.unwrap_or_default(),
                    e.message().trim_end().replace('\n', " ")
                ),
            }
        })?;
        apply_env(&mut tree, env)?;
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(tree)).map_err(|e| ConfigError::Invalid {
                path: origin.to_string(),
                key: e.path().to_string(),
                message: e.inner().to_string().lines().next().unwrap_or_default().to_string(),
            })?;
        config.check(origin)?;
        Ok(config)
    }

    /// Checks what serde cannot: unique names, value ranges.
    fn check(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: String, message: &str| ConfigError::Invalid {
            path: origin.to_string(),
            key,
            message: message.to_string(),
        };
        let mut names = std::collections::HashSet::new();
        for (i, l) in self.listeners.iter().enumerate() {
            if l.name.is_empty() {
                return Err(invalid(format!("listeners[{i}].name"), "must not be empty"));
            }
            if !names.insert(l.name.as_str()) {
                return Err(invalid(format!("listeners[{i}].name"), "duplicate listener name"));
            }
            if l.limits.max_packet_size < 64 || l.limits.max_packet_size > 268_435_460 {
                return Err(invalid(
                    format!("listeners[{i}].limits.max_packet_size"),
                    "must be between 64 and 268435460 bytes",
                ));
            }
            if l.limits.max_inflight == 0 || l.limits.max_incoming_inflight == 0 {
                return Err(invalid(
                    format!("listeners[{i}].limits"),
                    "inflight limits must be at least 1",
                ));
            }
            if l.limits.max_queued_messages == 0 || l.limits.max_topic_levels == 0 {
                return Err(invalid(
                    format!("listeners[{i}].limits"),
                    "max_queued_messages and max_topic_levels must be at least 1",
                ));
            }
        }
        let chains = crate::auth::Chains::build(&self.auth).map_err(|e| invalid("auth".into(), &e.to_string()))?;
        for (i, l) in self.listeners.iter().enumerate() {
            let chain = match chains.for_listener(l.auth.as_deref()) {
                Ok(c) => c,
                Err(e) => return Err(invalid(format!("listeners[{i}].auth"), &e.to_string())),
            };
            match (&l.tls, l.protocol) {
                (Some(tls), ListenerProtocol::Coap | ListenerProtocol::Lwm2m) => {
                    let lookup = chain.has_psk().then(|| {
                        let none: unigate_dtls::PskLookup = std::sync::Arc::new(|_: &[u8]| None);
                        none
                    });
                    if let Err(e) = crate::coap::dtls::server_config(tls, lookup) {
                        return Err(invalid(format!("listeners[{i}].tls"), &e.to_string()));
                    }
                }
                (Some(tls), ListenerProtocol::Mqtt | ListenerProtocol::Http | ListenerProtocol::MqttWs) => {
                    if let Err(e) = crate::tls::server_config(tls, &["mqtt"]) {
                        return Err(invalid(format!("listeners[{i}].tls"), &e.to_string()));
                    }
                }
                (None, _) => {}
            }
        }
        *self.built_chains.0.lock() = Some((format!("{:?}", self.auth), chains));
        if let Some(acl) = &self.acl {
            if let Err(e) = unigate_auth::acl::Acl::from_config(acl) {
                return Err(invalid("acl".into(), &e.to_string()));
            }
        }
        if let Some(m) = &self.management {
            if let Err((key, message)) = m.check(&self.auth) {
                return Err(invalid(format!("management.{key}"), &message));
            }
        }
        if let Err(e) = self.http.check() {
            return Err(invalid(format!("http.{}", e.0), e.1));
        }
        if let Err((key, why)) = self.lwm2m.check() {
            return Err(invalid(key, &why));
        }
        if let Err(e) = self.coap.check() {
            return Err(invalid(format!("coap.{}", e.0), e.1));
        }
        if self.mqtt.max_qos > 2 {
            return Err(invalid("mqtt.max_qos".into(), "must be 0, 1 or 2"));
        }
        Ok(())
    }

    /// The listeners to start: the configured ones, or the defaults on `host`.
    pub fn effective_listeners(&self, host: std::net::IpAddr) -> Vec<ListenerConfig> {
        if self.listeners.is_empty() {
            Self::default_listeners(host)
        } else {
            self.listeners.clone()
        }
    }
}

const ENV_PREFIX: &str = "UNIGATE__";

/// Applies `UNIGATE__A__B=value` overrides to the tree.
fn apply_env(tree: &mut toml::Table, env: impl IntoIterator<Item = (String, String)>) -> Result<(), ConfigError> {
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        let value = parse_env_value(&raw);
        let fail = |message: &str| ConfigError::Env {
            var: var.clone(),
            message: message.to_string(),
        };
        match path.as_slice() {
            [] => return Err(fail("empty key")),
            [section, name, keys @ ..] if section == "listeners" => {
                if keys.is_empty() {
                    return Err(fail("expected UNIGATE__LISTENERS__{name}__{key}"));
                }
                let listeners = tree
                    .get_mut("listeners")
                    .and_then(|v| v.as_array_mut())
                    .ok_or_else(|| fail("no [[listeners]] in the configuration"))?;
                let entry = listeners
                    .iter_mut()
                    .filter_map(|l| l.as_table_mut())
                    .find(|l| {
                        l.get("name")
                            .and_then(|n| n.as_str())
                            .is_some_and(|n| n.eq_ignore_ascii_case(name))
                    })
                    .ok_or_else(|| fail("no listener with that name"))?;
                set_path(entry, keys, value).map_err(|m| fail(&m))?;
            }
            keys => set_path(tree, keys, value).map_err(|m| fail(&m))?,
        }
    }
    Ok(())
}

fn parse_env_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), String> {
    match keys {
        [] => Err("empty key".into()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let child = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match child.as_table_mut() {
                Some(t) => set_path(t, rest, value),
                None => Err(format!("`{first}` is not a table")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.toml", Vec::new())
    }

    /// The chains the check built (reading the password file) are what the server takes: the
    /// file is read once. Taken twice, or after `auth` changed, they are built again.
    #[test]
    fn the_checked_chains_are_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("passwd.toml");
        let mut store = unigate_auth::password::PasswordStore::new(&file);
        store.add("u", &unigate_auth::Secret::new("p")).unwrap();
        store.save().unwrap();
        let text = format!(
            "[auth]\ndefault_chain = \"c\"\n[auth.chains.c]\nauthenticators = [\"users\"]\n\
             [auth.authenticators.users]\nkind = \"password\"\nfile = {:?}\n",
            file.display().to_string()
        );
        let config = parse(&text).unwrap();
        let again = config.clone();
        std::fs::remove_file(&file).unwrap();
        assert!(config.take_chains().is_ok(), "built by the check, before the file went");
        assert!(
            again.take_chains().is_err(),
            "taken once: built again, and the file is gone"
        );
        store.save().unwrap();
        let mut changed = parse(&text).unwrap();
        std::fs::remove_file(&file).unwrap();
        changed.auth.default_chain = None;
        assert!(
            changed.take_chains().is_err(),
            "auth changed after the check: built again"
        );
    }

    /// An authenticator named in two chains is one instance (its file read once, one
    /// throttle).
    #[test]
    fn chains_share_an_authenticator_they_both_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("passwd.toml");
        unigate_auth::password::PasswordStore::new(&file).save().unwrap();
        let text = format!(
            "[auth.chains.devices]\nauthenticators = [\"users\"]\n[auth.chains.admins]\nauthenticators = [\"users\"]\n\
             [auth.authenticators.users]\nkind = \"password\"\nfile = {:?}\n",
            file.display().to_string()
        );
        let config = parse(&text).unwrap();
        let chains = config.take_chains().unwrap();
        let (a, b) = (
            chains.for_listener(Some("devices")).unwrap(),
            chains.for_listener(Some("admins")).unwrap(),
        );
        assert!(std::sync::Arc::ptr_eq(&a.authenticators()[0], &b.authenticators()[0]));
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert!(c.listeners.is_empty());
        let l = c.effective_listeners("127.0.0.1".parse().unwrap());
        assert_eq!(l[0].bind, "127.0.0.1:1883".parse::<SocketAddr>().unwrap());
        assert_eq!((l[1].protocol, l[1].bind.port()), (ListenerProtocol::Coap, 5683));
        assert_eq!(c.mqtt.max_qos, 2);
    }

    #[test]
    fn unknown_key_names_its_path() {
        let err = parse("[[listeners]]\nname='a'\nprotocol='mqtt'\nbind='127.0.0.1:0'\nlimits={max_conections=1}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listeners[0].limits"), "{err}");
        assert!(err.contains("max_conections"), "{err}");
    }

    #[test]
    fn bad_value_names_its_path() {
        let err = parse("[mqtt]\nmax_qos = 'two'\n").unwrap_err().to_string();
        assert!(err.contains("mqtt.max_qos"), "{err}");
        let err = parse("[mqtt]\nmax_qos = 3\n").unwrap_err().to_string();
        assert!(err.contains("mqtt.max_qos"), "{err}");
    }

    #[test]
    fn syntax_errors_give_the_position_but_not_the_line() {
        let err = parse("[auth.authenticators.t]\nkind = \"jwt\"\nsecret = \"hunter2-very-secret\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn duplicate_listener_names_are_refused() {
        let l = "[[listeners]]\nname='a'\nprotocol='mqtt'\nbind='127.0.0.1:0'\n";
        let err = parse(&format!("{l}{l}")).unwrap_err().to_string();
        assert!(err.contains("duplicate"), "{err}");
    }

    #[test]
    fn env_overrides_sections_and_listeners() {
        let text = "[[listeners]]\nname='mqtt'\nprotocol='mqtt'\nbind='127.0.0.1:1883'\n";
        let env = vec![
            ("UNIGATE__MQTT__MAX_QOS".to_string(), "1".to_string()),
            ("UNIGATE__LISTENERS__MQTT__BIND".to_string(), "0.0.0.0:1884".to_string()),
            (
                "UNIGATE__LISTENERS__MQTT__LIMITS__CONNECT_TIMEOUT".to_string(),
                "3s".to_string(),
            ),
            ("PATH".to_string(), "/bin".to_string()),
        ];
        let c = Config::parse(text, "t", env).unwrap();
        assert_eq!(c.mqtt.max_qos, 1);
        assert_eq!(c.listeners[0].bind, "0.0.0.0:1884".parse::<SocketAddr>().unwrap());
        assert_eq!(c.listeners[0].limits.connect_timeout, Duration::from_secs(3));
    }

    #[test]
    fn env_override_of_unknown_listener_is_an_error() {
        let env = vec![("UNIGATE__LISTENERS__NOPE__BIND".to_string(), "0.0.0.0:1".to_string())];
        assert!(matches!(Config::parse("", "t", env), Err(ConfigError::Env { .. })));
    }

    #[test]
    fn example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("unigate.example.toml");
        let c = Config::load(&path, Vec::new()).unwrap();
        assert!(!c.listeners.is_empty());
    }
}

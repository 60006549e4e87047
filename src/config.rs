//! `frontdesk.toml`: every key with a default, unknown keys refused, validated
//! once into a [`Config`] that the rest of the program trusts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors reading or validating the configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address `serve` listens on.
    pub listen: SocketAddr,
    /// Directory holding the database.
    pub data_dir: PathBuf,
    /// The intents file.
    pub intents: PathBuf,
    /// The knowledge-base directory.
    pub knowledge_base: PathBuf,
    /// Reload the content when its files change.
    pub watch_content: bool,
    /// Web origins (`https://shop.example`) whose pages may open `/ws`, besides
    /// this server's own. Clients that send no Origin (not browsers) are allowed.
    pub allowed_origins: Vec<String>,
    /// Serve `/ws-echo`, a websocket with `/ws`'s settings that echoes every
    /// message, for websocket conformance suites (`scripts/autobahn`). Off in
    /// production.
    pub websocket_echo: bool,
    pub engine: EngineConfig,
    pub limits: Limits,
    pub store: StoreConfig,
    pub handoff: HandoffConfig,
    pub conversations: ConversationConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            intents: PathBuf::from("intents.toml"),
            knowledge_base: PathBuf::from("knowledge_base"),
            watch_content: true,
            allowed_origins: Vec::new(),
            websocket_echo: false,
            engine: EngineConfig::default(),
            limits: Limits::default(),
            store: StoreConfig::default(),
            handoff: HandoffConfig::default(),
            conversations: ConversationConfig::default(),
        }
    }
}

/// When conversations end, for the outcome figures.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConversationConfig {
    /// Minutes without a message after which a conversation with the bot is
    /// closed and its outcome decided (0: only visitors and agents close them).
    pub idle_close_minutes: u64,
    /// Hours after an idle close during which the visitor's return reopens the
    /// conversation (and its outcome is decided again when it next closes).
    pub reopen_window_hours: u64,
}

impl Default for ConversationConfig {
    fn default() -> Self {
        ConversationConfig {
            idle_close_minutes: 30,
            reopen_window_hours: 24,
        }
    }
}

/// Handing conversations to people: business hours and what visitors are told.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HandoffConfig {
    /// IANA time zone of `hours` ("Europe/Berlin").
    pub timezone: String,
    /// Weekly hours: day ("mon".."sun") to ranges ("09:00-17:00, 18:00-20:00").
    /// Days not named are closed; no days at all means open around the clock.
    pub hours: std::collections::BTreeMap<String, String>,
    /// Told to a visitor who asks for a person outside business hours.
    pub closed_message: String,
    /// Told to a queued visitor when no agent is signed in.
    pub no_agents_message: String,
    /// Told to a visitor who asks for a person while the queue is full.
    pub busy_message: String,
    /// Seconds an agent connection has to sign in.
    pub auth_timeout_secs: u64,
    /// Conversations waiting in the queue at most; beyond it visitors are
    /// offered an offline ticket instead.
    pub max_queue: usize,
}

impl Default for HandoffConfig {
    fn default() -> Self {
        HandoffConfig {
            timezone: "UTC".into(),
            hours: Default::default(),
            closed_message: "Our team is away right now. Leave your email address and a message, and we will write back as soon as we are in.".into(),
            no_agents_message: "Nobody from our team is online yet. You can wait here, or leave your email address and a message and we will write back.".into(),
            busy_message: "All of our team are busy right now. Leave your email address and a message, and we will write back soon.".into(),
            auth_timeout_secs: 10,
            max_queue: 1000,
        }
    }
}

impl HandoffConfig {
    /// The validated business hours.
    pub fn business_hours(&self) -> Result<crate::hours::Hours, String> {
        crate::hours::Hours::parse(&self.timezone, &self.hours)
            .map_err(|e| format!("handoff.hours: {e}"))
    }
}

/// Thresholds of the decision. Chosen by measurement with `frontdesk eval`
/// (see the README), not by guess.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Confidence (0..1) at or above which the best article answers outright.
    pub answer_threshold: f32,
    /// Confidence at or above which close candidates are offered as choices.
    pub clarify_threshold: f32,
    /// The best article answers outright only if it leads the runner-up by this much;
    /// otherwise the candidates within this margin are offered.
    pub clarify_margin: f32,
    /// Most candidates offered in a clarify reply.
    pub max_choices: usize,
    /// Fallbacks in a row after which the conversation escalates (0: never).
    pub fallbacks_before_escalation: u32,
    /// Articles retrieved by BM25 before per-question rescoring.
    pub candidates: usize,
    /// Characters of article text shown in an answer, at most.
    pub excerpt_chars: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            answer_threshold: 0.8,
            clarify_threshold: 0.4,
            clarify_margin: 0.15,
            max_choices: 3,
            fallbacks_before_escalation: 2,
            candidates: 8,
            excerpt_chars: 360,
        }
    }
}

/// Bounds on what a client may send or hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest visitor message text in bytes; longer gets an `error` frame.
    pub max_message_bytes: usize,
    /// Largest websocket message accepted at all; above it the socket closes (1009).
    pub max_frame_bytes: usize,
    /// Websocket read buffer per connection.
    pub ws_read_buffer_bytes: usize,
    /// Websocket write buffer per connection before frames are flushed.
    pub ws_write_buffer_bytes: usize,
    /// Frames queued to one client before it is considered too slow and closed.
    pub outbound_queue: usize,
    /// Seconds a client may leave the frames sent to it unread before it is
    /// considered too slow and closed.
    pub write_timeout_secs: u64,
    /// Concurrent websocket connections.
    pub max_connections: usize,
    /// Seconds without a frame from the client before the socket is closed.
    pub idle_timeout_secs: u64,
    /// Frames a client may send per second, sustained (0: no limit). Frames
    /// beyond it get a `rate_limited` error and are not processed.
    pub frames_per_second: u32,
    /// Frames a client may send in a burst above the sustained rate.
    pub frame_burst: u32,
    /// Open connections from one client address; more are closed at once.
    /// Offices behind one NAT address share this, so keep it generous.
    pub max_connections_per_address: usize,
    /// Connections that have not yet sent a complete request (a websocket
    /// handshake, say); more are closed at once.
    pub max_handshaking: usize,
    /// Seconds a new connection has to send a complete request, and that a
    /// plain HTTP connection may sit idle between requests.
    pub handshake_timeout_secs: u64,
    /// Visitor messages in one conversation; beyond it the visitor is asked to
    /// start a new one (`conversation_too_long`).
    pub max_conversation_messages: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 16 * 1024,
            max_frame_bytes: 64 * 1024,
            ws_read_buffer_bytes: 4 * 1024,
            ws_write_buffer_bytes: 4 * 1024,
            outbound_queue: 64,
            write_timeout_secs: 10,
            max_connections: 100_000,
            idle_timeout_secs: 600,
            frames_per_second: 50,
            frame_burst: 100,
            max_connections_per_address: 1000,
            max_handshaking: 1024,
            handshake_timeout_secs: 10,
            max_conversation_messages: 1000,
        }
    }
}

/// The longest `store.commit_delay_us` accepted: 50 ms.
const MAX_COMMIT_DELAY_US: u32 = 50_000;

/// Persistence settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite `synchronous` level: "full" survives power loss, "normal" only process crashes.
    pub synchronous: Synchronous,
    /// Most writes committed together in one transaction.
    pub max_batch: usize,
    /// Under heavy load (8,000 writes a second or more), how long a small
    /// group of writes may wait for more to join its commit, in
    /// microseconds: fewer commits, each amortized over more turns, leave
    /// the CPU to the visitors (0: every group is committed at once).
    pub commit_delay_us: u32,
    /// Conversations untouched for this many days are deleted with their
    /// transcripts (0: kept forever).
    pub retention_days: u32,
    /// Size of the write-ahead log past which it is started over and its
    /// file cut back to this size: the disk used beside the database under
    /// sustained load.
    pub wal_max_mib: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            synchronous: Synchronous::Full,
            max_batch: 512,
            commit_delay_us: 1000,
            retention_days: 365,
            wal_max_mib: 256,
        }
    }
}

/// How hard SQLite syncs at commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Full,
    Normal,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses configuration text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    /// Checks relations between keys that types alone cannot express.
    pub fn validate(&self) -> Result<(), String> {
        let e = &self.engine;
        for (name, v) in [
            ("engine.answer_threshold", e.answer_threshold),
            ("engine.clarify_threshold", e.clarify_threshold),
            ("engine.clarify_margin", e.clarify_margin),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be between 0 and 1, not {v}"));
            }
        }
        if e.clarify_threshold > e.answer_threshold {
            return Err("engine.clarify_threshold must not exceed engine.answer_threshold".into());
        }
        if e.candidates == 0 || e.max_choices == 0 {
            return Err("engine.candidates and engine.max_choices must be at least 1".into());
        }
        let l = &self.limits;
        if l.max_message_bytes == 0 || l.max_frame_bytes < l.max_message_bytes {
            return Err(
                "limits.max_frame_bytes must be at least limits.max_message_bytes (> 0)".into(),
            );
        }
        if l.max_connections_per_address == 0
            || l.max_handshaking == 0
            || l.handshake_timeout_secs == 0
            || l.write_timeout_secs == 0
            || l.max_conversation_messages == 0
        {
            return Err("limits.max_connections_per_address, max_handshaking, handshake_timeout_secs, write_timeout_secs and max_conversation_messages must be at least 1".into());
        }
        if l.outbound_queue == 0 || l.max_connections == 0 {
            return Err(
                "limits.outbound_queue and limits.max_connections must be at least 1".into(),
            );
        }
        self.handoff.business_hours()?;
        if self.handoff.max_queue == 0 || self.handoff.auth_timeout_secs == 0 {
            return Err(
                "handoff.max_queue and handoff.auth_timeout_secs must be at least 1".into(),
            );
        }
        if self.store.max_batch == 0 {
            return Err("store.max_batch must be at least 1".into());
        }
        if self.store.wal_max_mib == 0 {
            return Err("store.wal_max_mib must be at least 1".into());
        }
        if self.store.commit_delay_us > MAX_COMMIT_DELAY_US {
            return Err(format!(
                "store.commit_delay_us must be at most {MAX_COMMIT_DELAY_US} (every reply under load waits for it)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        let c = Config::parse("", Path::new("f.toml")).unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.limits.max_message_bytes, 16 * 1024);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::parse("lisen = \"0.0.0.0:1\"", Path::new("f.toml")).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn inconsistent_thresholds_are_refused() {
        let err = Config::parse(
            "[engine]\nanswer_threshold = 0.3\nclarify_threshold = 0.5",
            Path::new("f.toml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("clarify_threshold"), "{err}");
    }

    #[test]
    fn a_commit_delay_past_50_ms_is_refused() {
        let parse = |us: u32| {
            Config::parse(
                &format!("[store]\ncommit_delay_us = {us}"),
                Path::new("f.toml"),
            )
        };
        assert_eq!(parse(0).unwrap().store.commit_delay_us, 0);
        assert_eq!(parse(50_000).unwrap().store.commit_delay_us, 50_000);
        let err = parse(50_001).unwrap_err();
        assert!(
            err.to_string()
                .contains("store.commit_delay_us must be at most 50000"),
            "{err}"
        );
    }
}

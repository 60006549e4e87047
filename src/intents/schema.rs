//! The raw shape of `intents.toml`, as editors write it. Parsed here, then
//! compiled by [`super::Intents::compile`]; nothing else reads these types.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    #[serde(default)]
    pub synonyms: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub intent: Vec<Spanned<RawIntent>>,
    #[serde(default)]
    pub sensitive: RawSensitive,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntent {
    pub id: String,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub action: RawAction,
    pub reason: Option<String>,
    #[serde(default)]
    pub patterns: Vec<Spanned<String>>,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub examples: Vec<String>,
    pub response: String,
    #[serde(default)]
    pub quick_replies: Vec<String>,
    #[serde(default)]
    pub slots: Vec<Spanned<RawSlot>>,
    #[serde(default)]
    pub smalltalk: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawAction {
    #[default]
    Answer,
    Escalate,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlot {
    pub name: String,
    pub pattern: Option<String>,
    pub prompt: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSensitive {
    pub response: Option<String>,
    #[serde(default)]
    pub rule: Vec<Spanned<RawSensitiveRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSensitiveRule {
    pub id: String,
    #[serde(default)]
    pub terms: Vec<String>,
    #[serde(default)]
    pub patterns: Vec<String>,
    #[serde(default)]
    pub luhn: bool,
    #[serde(default)]
    pub redact: bool,
    pub response: Option<String>,
}

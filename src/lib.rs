//! frontdesk: a self-hosted support chatbot server. Visitors chat over a
//! websocket; the engine answers from intents and a knowledge base, escalates
//! what it should not handle, and every message is stored before it is
//! acknowledged.

pub mod analytics;
pub mod check;
pub mod config;
pub mod content;
pub mod convtest;
pub mod engine;
pub mod eval;
pub mod fdlimit;
pub mod fuzzing;
pub mod handoff;
pub mod hours;
pub mod intents;
pub mod kb;
pub mod protocol;
pub mod rxstamp;
pub mod server;
pub mod store;
pub mod text;

//! What the bot achieved and what to write next: live counters for
//! `/metrics`, figures over a period (`/api/stats`, `frontdesk stats`), and
//! content gaps (`/api/gaps`, `frontdesk gaps`). Outcome definitions are
//! decided in the store when a conversation closes.

pub mod gaps;
pub mod metrics;
pub mod process;
pub mod stats;

pub use gaps::{group, questions, Gap, GapKind};
pub use metrics::{Gauges, Metrics, Rejection, Rejections};
pub use stats::{parse_time, stats, Bucket, Stats, Summary};

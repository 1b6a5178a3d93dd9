//! # faultline-checker
//!
//! The history model, importers and exporters, sequential models, and a fast linearizability
//! checker. Pure computation: no async runtime, no network.
//!
//! ```
//! use faultline_checker::{check_history, format, CheckOptions, ModelSpec, Verdict};
//!
//! let jsonl = r#"{"index":0,"time":0,"process":0,"type":"invoke","f":"write","value":1}
//! {"index":1,"time":5,"process":0,"type":"ok","f":"write","value":1}
//! {"index":2,"time":9,"process":1,"type":"invoke","f":"read","value":null}
//! {"index":3,"time":12,"process":1,"type":"ok","f":"read","value":0}"#;
//! let parsed = format::parse_str("example.jsonl", jsonl, format::Format::Jsonl).unwrap();
//! let spec = ModelSpec::from_name("register", None).unwrap();
//! let report = check_history(&spec, &parsed.history, &CheckOptions::default()).unwrap();
//! assert_eq!(report.verdict, Verdict::Invalid); // 0 was never written
//! ```

pub mod error;
pub mod format;
pub mod history;
pub mod model;
pub mod set_full;
pub mod synth;
pub mod text;
pub mod value;
pub mod verdict;

mod check;
mod explain;
mod key;
mod search;
mod visited;

pub use check::{check, check_history, CheckOptions};
pub use error::HistoryError;
pub use history::{Event, EventType, History, Operation, Outcome, Process};
pub use model::{Model, ModelOp, ModelSpec, NilReads, RawOp};
pub use verdict::{Failure, Report, Verdict};

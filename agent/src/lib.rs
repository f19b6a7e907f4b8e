//! `winky`, the agent CLI: a plain-English prompt becomes a plan, manifests
//! built from the `winky-crds` types, checks run in a sandbox, and a draft
//! pull request on a `winky/` branch — with the prompt redacted first and
//! every action on record.
//!
//! ```text
//! prompt ─▶ redact ─▶ plan ─▶ generate ─▶ check ─▶ preview ─▶ commit/push/PR ─▶ audit
//!           (rules     (offline   (App,       (Rule     (tree,    (git2, octocrab,
//!            as data)   | openai)  Function,   tests,    diff)     winky/ only)
//!                                  Rule)       dry run)
//! ```

pub mod audit;
pub mod branch;
pub mod check;
pub mod cli;
pub mod emulate;
pub mod generate;
pub mod git;
pub mod github;
pub mod plan;
pub mod planner;
pub mod preview;
pub mod propose;
pub mod secrets;
pub mod status;

/// Redaction lives in its own crate, shared with the emulator and the operator.
pub use winky_redact as redact;

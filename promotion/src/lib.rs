//! The promotion model, pure: what the operator decides when a revision
//! moves from stage to stage, with no Kubernetes client and no clock of its
//! own (time is passed in), so every decision is unit-tested.
//!
//! - [`chatops`]: the commands people type in pull-request comments.
//! - [`approvals`]: which approvals count for which revision, and why not.
//! - [`pipeline`]: the Promotions of an App, their gates and phases.
//! - [`slo`]: the PromQL of the metrics contract and the verdict on its readings.

pub mod approvals;
pub mod chatops;
pub mod pipeline;
pub mod slo;

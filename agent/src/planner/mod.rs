//! Planners turn a redacted prompt into a [`Plan`].
//!
//! Two implementations: [`offline::OfflinePlanner`], the default, deterministic
//! and without network; and [`openai::OpenAiPlanner`], for any OpenAI-compatible
//! chat-completions endpoint with JSON-schema structured output. A planner only
//! ever receives the redacted prompt.

use std::future::Future;
use std::pin::Pin;

use crate::plan::{InvalidPlan, Plan};

pub mod offline;
pub mod openai;

/// What a planner is asked.
#[derive(Clone, Debug)]
pub struct PlanRequest {
    /// The prompt after redaction.
    pub prompt: String,
    /// Same prompt and seed, same plan (the offline planner always; a provider
    /// when it honours `seed`).
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Invalid(#[from] InvalidPlan),
    #[error("the planning provider failed: {0}")]
    Provider(String),
    #[error("the planning provider answered something that is not a plan: {0}")]
    Malformed(String),
}

pub type PlanFuture<'a> = Pin<Box<dyn Future<Output = Result<Plan, PlanError>> + Send + 'a>>;

/// Something that plans. The returned plan has passed [`Plan::validate`].
pub trait Planner: Send + Sync {
    /// A short name for progress output and the audit log.
    fn name(&self) -> &str;
    fn plan<'a>(&'a self, request: &'a PlanRequest) -> PlanFuture<'a>;
}

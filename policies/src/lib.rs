//! CEL for Winky, compiled once and evaluated with typed inputs.
//!
//! - [`rules`]: `Rule` conditions (Firestore-style: `match` paths with
//!   variables, `allow` conditions per operation) and their tests.
//! - [`eligibility`]: whether an approval counts under a `PromotionPolicy`.
//!
//! Compile errors name the rule, the operation, and the line and column in
//! the expression. Evaluation errors deny: a condition that cannot be
//! evaluated never allows anything.

pub mod eligibility;
mod expr;
pub mod path;
pub mod rules;

pub use expr::CompileError;

//! The Winky operator.
//!
//! ```text
//!             ┌──────────── watches (reflector caches) ────────────┐
//!   App ──▶ app::reconcile: dereference → validate → build → apply → status
//!                                              │          │         │
//!                         Deployment, Service, ┘          │         └─ conditions, Events
//!                         ServiceAccount, ConfigMap,      └─ server-side apply,
//!                         NetworkPolicy, PDB                 prune by label
//! ```
//!
//! Every module owns one step: [`app`], [`function`], [`rule`] and
//! [`gitsource`] the controllers (with [`app`] the template the others
//! follow), [`driver`] what every reconcile shares (timing, metrics, backoff,
//! the status write), [`shared`] the watches several controllers read,
//! [`watch`] and [`triggers`] the streams that wake them, [`index`] lookups
//! by App and by repository, [`apply`] the shared server-side apply and
//! prune machinery, [`conditions`] the `metav1.Condition` bookkeeping,
//! [`naming`], [`revision`] and [`rollout`] what several controllers agree
//! on, [`leader`] Lease-based leader election, [`run`] the wiring of it all,
//! [`metrics`] and [`http`] the operational endpoints.

pub mod agents;
pub mod app;
pub mod apply;
pub mod cli;
pub mod conditions;
pub mod context;
pub mod driver;
pub mod emulate;
pub mod error;
pub mod events;
pub mod function;
pub mod github;
pub mod gitsource;
pub mod http;
pub mod index;
pub mod leader;
pub mod listed;
pub mod metrics;
pub mod naming;
pub mod promotion;
pub mod pulls;
pub mod revision;
pub mod rollout;
pub mod rule;
pub mod run;
pub mod shared;
pub mod triggers;
pub mod watch;
pub mod webhook;
pub mod workload;

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "winky-operator";
/// Value of `app.kubernetes.io/managed-by` on everything the operator creates.
pub const MANAGED_BY: &str = "winky-operator";

//! Defaults that the operator gives workloads in the cluster and the
//! emulator gives them in its sandbox: one definition, so a workload that
//! passes the emulator runs with the same user and limits in the cluster.

/// CPU of an App's container when `spec.resources.cpu` is unset.
pub const APP_CPU: &str = "250m";
/// Memory of an App's container when `spec.resources.memory` is unset.
pub const APP_MEMORY: &str = "256Mi";
/// The non-root user (and group) every workload runs as.
pub const RUN_AS: i64 = 65532;

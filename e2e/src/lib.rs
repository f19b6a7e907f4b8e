//! The local test environment: a real etcd, kube-apiserver and
//! kube-controller-manager on free loopback ports, with the Winky CRDs installed.
//!
//! ```text
//!   etcd ◀── kube-apiserver ◀── kube-controller-manager (garbage collection,
//!                 ▲                                      Deployments → Pods)
//!                 └── tests / operator (kube::Client, kubectl --kubeconfig)
//! ```
//!
//! One control plane serves a whole test binary ([`ControlPlane::shared`]); each
//! test works in its own labelled namespace ([`ControlPlane::namespace`]). Every
//! component's log is kept under `target/e2e/<run>/` and the path is printed, so a
//! failing test leaves evidence behind.

mod certs;
mod controlplane;
pub mod engine;
pub mod git;
pub mod github;
pub mod gitops;
mod objects;
pub mod openai;
mod operator;
mod process;
pub mod prometheus;
pub mod vault;
mod wait;
pub mod webhook;

pub use controlplane::{ControlPlane, TestNamespace, kubernetes_bin_dir};
pub use objects::{apply_json, apply_policy, gone_or_going, promotions};
pub use operator::{InProcessOperator, OperatorProcess, metric_value, operator_binary, workspace_binary};
pub use process::Component;
pub use wait::eventually;

use std::path::PathBuf;

/// Root of the workspace (the directory holding `Cargo.toml` and `crds/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ lives inside the workspace")
        .to_path_buf()
}

/// The first `name` on the `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

//! Command-line flags of `winky-operator`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, Parser, ValueEnum};

/// Reconciles Winky's App resources into running, isolated workloads.
///
/// The operator watches Apps (and the PromotionPolicies they follow) and
/// server-side applies their Deployment, Service, ServiceAccount, runtime
/// ConfigMap, NetworkPolicy and PodDisruptionBudget. It reports progress in
/// each App's status conditions and as Kubernetes Events.
///
/// Examples:
///
///   winky-operator --kubeconfig .dev/kubeconfig --namespace notes
///
///   winky-operator --log-format json --metrics-addr 0.0.0.0:8080
#[derive(Debug, Parser)]
#[command(name = "winky-operator", version, about, long_about, max_term_width = 100)]
pub struct Args {
    /// Kubeconfig to use. Without it: $KUBECONFIG, ~/.kube/config, then the
    /// in-cluster service account.
    #[arg(long, env = "KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Watch one namespace only. Without it, every namespace (which needs
    /// cluster-wide RBAC).
    #[arg(long, short = 'n', env = "WINKY_NAMESPACE", value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "WINKY_METRICS_ADDR",
        default_value = "0.0.0.0:8080",
        value_name = "ADDR"
    )]
    pub metrics_addr: SocketAddr,

    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, env = "WINKY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Most Apps reconciled at the same time (0: no limit).
    #[arg(long, env = "WINKY_CONCURRENCY", default_value_t = 8, value_name = "N")]
    pub concurrency: u16,

    /// Elect a leader through a Lease so only one replica writes. Turn off only
    /// when exactly one replica runs.
    #[arg(long, env = "WINKY_LEADER_ELECT", default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub leader_elect: bool,

    /// Namespace of the leader Lease. Default: --namespace when given, else the
    /// pod's namespace ($POD_NAMESPACE), else `winky-system`.
    #[arg(long, value_name = "NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Identity in the leader Lease. Default: $POD_NAME, else host name and pid.
    #[arg(long, env = "POD_NAME", value_name = "ID")]
    pub identity: Option<String>,

    /// Vault (or OpenBao) address for App secrets that read from Vault. Without
    /// it, such Apps are reported Degraded with reason VaultNotConfigured.
    #[arg(long, env = "VAULT_ADDR", value_name = "URL")]
    pub vault_addr: Option<String>,

    /// IngressClass of the Ingress of a public App (`spec.ingress.public`) whose
    /// `spec.ingress.className` is unset. Without it, the cluster's default
    /// IngressClass serves such Ingresses.
    #[arg(long, env = "WINKY_INGRESS_CLASS", value_name = "CLASS")]
    pub ingress_class: Option<String>,

    /// A container engine's Docker API socket (podman: `hack/podman.sh start DIR` prints it).
    /// With it, every new revision of an App runs the emulator checks (Rule tests, Function
    /// test cases in a sandbox, the App's health probe) and the result goes to status.emulator.
    #[arg(long, env = "WINKY_ENGINE", value_name = "SOCKET")]
    pub engine: Option<std::path::PathBuf>,

    /// Most emulator runs at the same time; the others wait their turn, and a
    /// run whose App changed again meanwhile is skipped.
    #[arg(long, env = "WINKY_EMULATOR_CONCURRENCY", default_value_t = 2, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub emulator_concurrency: u16,

    /// Directory for the GitSources' bare cache repositories (one per
    /// GitSource; only the protected branch is fetched, shallow).
    #[arg(long, env = "WINKY_GIT_CACHE_DIR", value_name = "DIR", default_value_os_t = default_git_cache_dir())]
    pub git_cache_dir: PathBuf,

    /// Address of the GitHub webhook receiver: `POST /hooks/github/{namespace}/{name}`
    /// per GitSource, verified with the GitSource's `spec.webhook` secret. A push
    /// to the protected branch syncs at once. Off when not given.
    #[arg(long, env = "WINKY_WEBHOOK_ADDR", value_name = "ADDR")]
    pub webhook_addr: Option<SocketAddr>,
}

/// `$TMPDIR/winky-operator/git`: in a cluster, an emptyDir mounted on /tmp.
fn default_git_cache_dir() -> PathBuf {
    std::env::temp_dir().join("winky-operator").join("git")
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Args {
    /// Namespace of the leader Lease.
    pub fn lease_namespace(&self) -> String {
        self.lease_namespace
            .clone()
            .or_else(|| self.namespace.clone())
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "winky-system".into())
    }

    /// Identity in the leader Lease.
    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_parse() {
        Args::command().debug_assert();
        let args = Args::try_parse_from([
            "winky-operator",
            "--namespace",
            "notes",
            "--log-format",
            "json",
            "--concurrency",
            "3",
            "--leader-elect",
            "false",
        ])
        .unwrap();
        assert_eq!(args.namespace.as_deref(), Some("notes"));
        assert_eq!(args.log_format, LogFormat::Json);
        assert_eq!(args.concurrency, 3);
        assert!(!args.leader_elect);
        assert_eq!(args.lease_namespace(), "notes");
        assert_eq!(args.emulator_concurrency, 2, "the default");
    }

    #[test]
    fn the_emulator_runs_at_least_one_at_a_time() {
        let args = Args::try_parse_from(["winky-operator", "--emulator-concurrency", "4"]).unwrap();
        assert_eq!(args.emulator_concurrency, 4);
        let err = Args::try_parse_from(["winky-operator", "--emulator-concurrency", "0"]).unwrap_err();
        assert!(err.to_string().contains("--emulator-concurrency"), "{err}");
    }

    #[test]
    fn the_ingress_class_is_optional() {
        let args = Args::try_parse_from(["winky-operator"]).unwrap();
        assert_eq!(args.ingress_class, None, "the cluster's default class");
        let args = Args::try_parse_from(["winky-operator", "--ingress-class", "nginx"]).unwrap();
        assert_eq!(args.ingress_class.as_deref(), Some("nginx"));
    }

    #[test]
    fn rejects_an_unknown_log_format() {
        let err = Args::try_parse_from(["winky-operator", "--log-format", "xml"]).unwrap_err();
        assert!(err.to_string().contains("possible values: text, json"), "{err}");
    }
}

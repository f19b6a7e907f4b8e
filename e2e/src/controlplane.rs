//! Starting and using the local control plane.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::process::Component;
use crate::{certs, workspace_root};

/// How long the apiserver may take to report ready.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// A running etcd, kube-apiserver and kube-controller-manager with the Winky
/// CRDs installed. Dropping it stops every component.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    server: String,
    boot_time: Duration,
    /// How kube-apiserver was started: `restart_apiserver` starts it again so.
    apiserver: (PathBuf, Vec<String>),
    // Stopped in reverse order of start by `Drop`.
    components: Vec<Component>,
}

impl ControlPlane {
    /// The control plane shared by every test of this test binary, started on
    /// first use. Its components stop when the test binary exits.
    pub fn shared() -> &'static ControlPlane {
        // A failed start is remembered, so the other tests fail at once with
        // the same message instead of each trying again.
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        let started = SHARED.get_or_init(|| {
            let root = workspace_root().join("target/e2e");
            ControlPlane::start(&root, "test").map_err(|e| format!("{e:#}"))
        });
        match started {
            Ok(cp) => cp,
            Err(e) => panic!("the local control plane did not start: {e}"),
        }
    }

    /// Starts a control plane whose files live in a new directory below `root`.
    pub fn start(root: &Path, label: &str) -> Result<Self> {
        let started = Instant::now();
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
        let dir = root.join(format!("{label}-{stamp}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let dir = dir.canonicalize()?;
        eprintln!("winky-e2e: control plane files and logs in {}", dir.display());

        let bin = kubernetes_bin_dir()?;
        let etcd = etcd_bin_vendored::etcd_bin_path()
            .map_err(|e| anyhow!("etcd-bin-vendored has no etcd for this machine: {e:?}"))?;
        let certs = certs::generate(&dir.join("certs"))?;
        let token = format!("winky-e2e-{stamp:x}");
        std::fs::write(
            dir.join("tokens.csv"),
            format!("{token},admin,admin,\"system:masters\"\n"),
        )?;

        let mut components = Vec::new();

        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        // Two control planes of one test binary may start in the same
        // millisecond: a counter keeps their etcd data apart.
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let nth = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let etcd_data = std::env::temp_dir().join(format!("winky-etcd-{stamp}-{}-{nth}", std::process::id()));
        components.push(Component::spawn(
            "etcd",
            etcd,
            &[
                format!("--data-dir={}", etcd_data.display()),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
                format!("--initial-cluster=default=http://127.0.0.1:{etcd_peer_port}"),
                "--unsafe-no-fsync".into(),
                "--quota-backend-bytes=4294967296".into(),
                "--log-level=warn".into(),
            ],
            &dir,
            Some(&etcd_data),
        )?);

        let api_port = free_port()?;
        let server = format!("https://127.0.0.1:{api_port}");
        let c = dir.join("certs");
        let apiserver_args: Vec<String> = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!("--tls-cert-file={}", c.join("apiserver.crt").display()),
            format!("--tls-private-key-file={}", c.join("apiserver.key").display()),
            format!("--client-ca-file={}", c.join("ca.crt").display()),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", c.join("sa.pub").display()),
            format!(
                "--service-account-signing-key-file={}",
                c.join("sa.key").display()
            ),
            "--authorization-mode=RBAC".into(),
            // As on OpenShift and hardened clusters: setting
            // blockOwnerDeletion needs `update` on the owner's finalizers,
            // which deploy/rbac.yaml must grant (e2e/tests/rbac.rs).
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
            format!("--token-auth-file={}", dir.join("tokens.csv").display()),
            "--allow-privileged=true".into(),
            "--enable-priority-and-fairness=false".into(),
            "--watch-cache=true".into(),
            "--v=1".into(),
        ];
        let apiserver = (bin.join("kube-apiserver"), apiserver_args);
        components.push(Component::spawn(
            "kube-apiserver",
            &apiserver.0,
            &apiserver.1,
            &dir,
            None,
        )?);

        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, render_kubeconfig(&server, &certs.ca_pem, &token))?;
        let kubectl = bin.join("kubectl");
        let mut cp = ControlPlane {
            dir,
            kubeconfig,
            kubectl,
            server,
            boot_time: Duration::ZERO,
            apiserver,
            components,
        };
        cp.wait_ready()?;

        let cm_port = free_port()?;
        let kubeconfig = cp.kubeconfig.display().to_string();
        cp.components.push(Component::spawn(
            "kube-controller-manager",
            &bin.join("kube-controller-manager"),
            &[
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={cm_port}"),
                format!(
                    "--service-account-private-key-file={}",
                    c.join("sa.key").display()
                ),
                format!("--root-ca-file={}", c.join("ca.crt").display()),
                "--concurrent-gc-syncs=5".into(),
                "--v=1".into(),
            ],
            &cp.dir,
            None,
        )?);

        cp.install_crds()?;
        cp.boot_time = started.elapsed();
        eprintln!(
            "winky-e2e: control plane ready at {} in {:.1}s (kubeconfig {})",
            cp.server,
            cp.boot_time.as_secs_f64(),
            cp.kubeconfig.display()
        );
        Ok(cp)
    }

    /// Path of an admin kubeconfig for this control plane.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Directory holding the logs and generated files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// URL of the apiserver.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Time from start to ready, CRDs installed.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// A client for the current tokio runtime. Build one per test: a client is
    /// bound to the runtime it was created on.
    pub async fn client(&self) -> Result<Client> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }

    /// A client that acts as `user` (the admin impersonates it), so the
    /// apiserver's RBAC judges every request by that user's permissions.
    pub async fn client_as(&self, user: &str) -> Result<Client> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        config.auth_info.impersonate = Some(user.to_string());
        Ok(Client::try_from(config)?)
    }

    /// `kubectl --kubeconfig <this> args…`: its output, or an error with stderr.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl_command(args).output().context("running kubectl")?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// A `kubectl` command bound to this control plane, for callers that need stdin.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        // Ports are reused across runs: a shared discovery cache would answer
        // for an earlier control plane without the Winky CRDs.
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("kubectl-cache"))
            .args(args);
        cmd
    }

    /// Creates a fresh namespace for one test, labelled `winky.dev/e2e=<prefix>`
    /// and enforcing the Pod Security "restricted" profile.
    pub async fn namespace(&self, client: &Client, prefix: &str) -> Result<TestNamespace> {
        let api: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "generateName": format!("{prefix}-"),
                "labels": {
                    "winky.dev/e2e": prefix,
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                },
            },
        }))?;
        let created = api.create(&PostParams::default(), &ns).await?;
        let name = created.metadata.name.context("namespace has a name")?;
        Ok(TestNamespace {
            name,
            client: client.clone(),
            dump_to: self.dir.clone(),
            kubectl: self.kubectl_command(&[]),
        })
    }

    /// Stops kube-apiserver (etcd keeps the state) and starts it again with
    /// the same flags, on the same port; returns once it is ready. For fault
    /// tests, on a control plane of their own (`ControlPlane::start`).
    pub fn restart_apiserver(&mut self, down_for: Duration) -> Result<()> {
        let at = self
            .components
            .iter()
            .position(|c| c.name() == "kube-apiserver")
            .ok_or_else(|| anyhow!("kube-apiserver is not running"))?;
        self.components[at].stop(Duration::from_secs(10));
        std::thread::sleep(down_for);
        let (program, args) = &self.apiserver;
        self.components[at] = Component::spawn("kube-apiserver", program, args, &self.dir, None)?;
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            let ok = self
                .kubectl_command(&["get", "--raw", "/readyz"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            for c in &mut self.components {
                if c.exited() {
                    bail!(
                        "{} exited during start-up; last lines of {}:\n{}",
                        c.name(),
                        c.log().display(),
                        c.log_tail(30)
                    );
                }
            }
            if Instant::now() > deadline {
                let api = &self.components[1];
                bail!(
                    "kube-apiserver not ready after {BOOT_TIMEOUT:?}; last lines of {}:\n{}",
                    api.log().display(),
                    api.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn install_crds(&self) -> Result<()> {
        let manifests = workspace_root().join("crds/manifests");
        let dir = manifests.display().to_string();
        self.kubectl(&["apply", "--server-side", "--field-manager=winky-e2e", "-f", &dir])?;
        self.kubectl(&["wait", "--for=condition=Established", "--timeout=60s", "-f", &dir])?;
        Ok(())
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        while let Some(mut c) = self.components.pop() {
            c.stop(Duration::from_secs(10));
        }
    }
}

/// A namespace that belongs to one test. When the test panics, dropping it
/// writes every object of the namespace to `<control plane dir>/<ns>.yaml`
/// and prints the path; otherwise it deletes the namespace.
pub struct TestNamespace {
    /// Name of the namespace.
    pub name: String,
    client: Client,
    dump_to: PathBuf,
    kubectl: Command,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace").field("name", &self.name).finish()
    }
}

impl TestNamespace {
    /// Name of the namespace.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let path = self.dump_to.join(format!("{}.yaml", self.name));
            // Categories cannot be mixed with other types in one `kubectl get`.
            let kinds = [
                "winky",
                "all,configmaps,networkpolicies,poddisruptionbudgets,serviceaccounts,leases",
                "events",
            ];
            let mut dump = Vec::new();
            for kind in kinds {
                let out = Command::new(self.kubectl.get_program())
                    .args(self.kubectl.get_args())
                    .args(["get", kind, "-n", &self.name, "-o", "yaml"])
                    .output();
                if let Ok(out) = out {
                    dump.extend(out.stdout);
                    dump.extend(out.stderr);
                    dump.extend(b"---\n");
                }
            }
            let _ = std::fs::write(&path, dump);
            eprintln!(
                "winky-e2e: state of namespace {} written to {}",
                self.name,
                path.display()
            );
            return;
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        let name = self.name.clone();
        // Best effort: the control plane is discarded with the test binary anyway.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = api.delete(&name, &DeleteParams::default()).await;
            });
        }
    }
}

/// The directory holding kube-apiserver, kube-controller-manager and kubectl,
/// built by `e2e/controlplane/build.sh` when missing (cached by version).
pub fn kubernetes_bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("WINKY_KUBE_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let script = workspace_root().join("e2e/controlplane/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: the control-plane binaries could not be built. Install Go 1.26+ \
             (apt-get install golang-go) and run `make controlplane`",
            script.display()
        );
    }
    let dir = String::from_utf8(out.stdout)?.trim().to_string();
    Ok(PathBuf::from(dir))
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn render_kubeconfig(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: winky-local
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: winky-local
  context:
    cluster: winky-local
    user: admin
current-context: winky-local
"
    )
}

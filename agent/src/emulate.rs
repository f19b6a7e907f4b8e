//! `winky emulate`: the manifests are read and validated offline against the
//! CRDs' schemas and CEL rules (what the cluster would refuse fails here
//! first), optionally dry-run on a cluster, then the emulator's checks run —
//! an App's, or without an App its Rules' tests.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PatchParams};
use kube::{Client, Resource};
use winky_emulator::{Check, CheckKind, Engine, Manifests};

use crate::check;
use crate::cli::{EmulateArgs, OutputFormat};

/// Where `make up` (`hack/up.sh`, `winky-dev up .dev`) starts its engine,
/// relative to the directory it runs in.
pub const DEV_ENGINE_SOCKET: &str = ".dev/engine/podman.sock";

/// The socket of the engine `make up` started: `.dev/engine/podman.sock` in
/// `start` or the nearest directory above it that has one.
pub fn discover_engine(start: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    start
        .ancestors()
        .map(|dir| dir.join(DEV_ENGINE_SOCKET))
        .find(|socket| std::fs::metadata(socket).is_ok_and(|m| m.file_type().is_socket()))
}

async fn connect_engine(args: &EmulateArgs) -> anyhow::Result<Option<Engine>> {
    if let Some(socket) = args.engine.explicit() {
        return Ok(Some(Engine::connect(&socket).await?));
    }
    let discovered = std::env::current_dir().ok().and_then(|dir| discover_engine(&dir));
    let Some(socket) = discovered else {
        eprintln!(
            "winky: {}; the container checks will fail",
            winky_emulator::engine::NO_ENGINE
        );
        return Ok(None);
    };
    match Engine::connect(&socket).await {
        Ok(engine) => {
            eprintln!("winky: using the engine `make up` started: {}", socket.display());
            Ok(Some(engine))
        }
        Err(e) => {
            eprintln!("winky: {e}; the container checks will fail");
            Ok(None)
        }
    }
}

async fn kube_client(path: &Path) -> anyhow::Result<Client> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let kubeconfig = Kubeconfig::read_from(path)
        .map_err(|e| anyhow::anyhow!("cannot read kubeconfig {}: {e}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| anyhow::anyhow!("kubeconfig {}: {e}", path.display()))?;
    Ok(Client::try_from(config)?)
}

/// A server-side dry run of every valid App, Function and Rule (with
/// `winky propose`'s dry run, `check::dry_run`): the apiserver judges them
/// as it will when they are applied. An object whose namespace does not
/// exist yet is dry-run in `default`; the message says so.
pub async fn server_dry_run(client: &Client, manifests: &Manifests) -> Vec<Check> {
    let params = PatchParams::apply(check::DRY_RUN_MANAGER).dry_run().force();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut checks = Vec::new();
    let mut existing: Vec<(String, bool)> = Vec::new();
    let objects = manifests
        .apps
        .iter()
        .map(|a| a.meta().namespace.clone())
        .chain(manifests.functions.iter().map(|f| f.meta().namespace.clone()))
        .chain(manifests.rules.iter().map(|r| r.meta().namespace.clone()));
    for namespace in objects.flatten() {
        if !existing.iter().any(|(n, _)| *n == namespace) {
            let exists = matches!(namespaces.get_opt(&namespace).await, Ok(Some(_)));
            existing.push((namespace, exists));
        }
    }
    let target = |namespace: Option<&String>| -> (String, String) {
        match namespace {
            Some(ns) if existing.iter().any(|(n, e)| n == ns && *e) => (ns.clone(), String::new()),
            Some(ns) => (
                "default".into(),
                format!(" (in namespace default: {ns} does not exist yet)"),
            ),
            None => ("default".into(), String::new()),
        }
    };
    macro_rules! dry_run_all {
        ($objects:expr) => {
            for object in $objects {
                let started = Instant::now();
                let (namespace, note) = target(object.meta().namespace.as_ref());
                let result = check::dry_run(client, &namespace, object, &params, &note).await;
                checks.push(Check::finished(
                    result.name,
                    CheckKind::DryRun,
                    started,
                    result.passed,
                    result.message,
                    "",
                ));
            }
        };
    }
    dry_run_all!(&manifests.apps);
    dry_run_all!(&manifests.functions);
    dry_run_all!(&manifests.rules);
    checks
}

pub async fn run(args: EmulateArgs) -> anyhow::Result<ExitCode> {
    let manifests = Manifests::load(&args.file)?;
    let target = manifests.target(args.app.as_deref())?;
    for unchecked in &manifests.unchecked {
        eprintln!("winky: warning: {unchecked}");
    }
    let mut server = Vec::new();
    if let Some(path) = &args.kubeconfig {
        let client = kube_client(path).await?;
        server = server_dry_run(&client, &manifests).await;
    }
    let needs_engine = match &target {
        winky_emulator::Target::App(_) => true,
        winky_emulator::Target::WithoutApp { functions, .. } => !functions.is_empty(),
    };
    let engine = if needs_engine {
        connect_engine(&args).await?
    } else {
        None
    };
    match &target {
        winky_emulator::Target::App(bundle) => eprintln!(
            "emulating {} ({} rule(s), {} function(s))…",
            bundle.name(),
            bundle.rules.len(),
            bundle.functions.len()
        ),
        winky_emulator::Target::WithoutApp { functions, rules, .. }
            if functions.is_empty() && rules.is_empty() =>
        {
            eprintln!("no valid App, Function or Rule to run in {}", args.file.display())
        }
        winky_emulator::Target::WithoutApp {
            app,
            functions,
            rules,
        } => eprintln!(
            "no App in {}: testing the rules (and functions) of {app} on their own ({} rule(s), {} function(s))…",
            args.file.display(),
            rules.len(),
            functions.len()
        ),
    }
    let mut report = winky_emulator::emulate(&manifests, &target, engine.as_ref()).await;
    report.extend(server);
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => println!("{report}"),
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_of_make_up_is_found_from_below_the_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("examples/notes");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::create_dir_all(dir.path().join(".dev/engine")).unwrap();
        assert_eq!(discover_engine(&nested), None, "no socket yet");
        // A plain file is not an engine.
        std::fs::write(dir.path().join(DEV_ENGINE_SOCKET), "").unwrap();
        assert_eq!(discover_engine(&nested), None);
        std::fs::remove_file(dir.path().join(DEV_ENGINE_SOCKET)).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(dir.path().join(DEV_ENGINE_SOCKET)).unwrap();
        assert_eq!(discover_engine(&nested), Some(dir.path().join(DEV_ENGINE_SOCKET)));
        assert_eq!(
            discover_engine(dir.path()),
            Some(dir.path().join(DEV_ENGINE_SOCKET))
        );
    }
}

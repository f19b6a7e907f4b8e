//! Images without a registry: a root filesystem built in memory — busybox
//! (from Debian's busybox-static) for a shell and tools, the program at
//! `/fn`, users and an empty `/tmp` — wrapped in a docker-archive and loaded
//! through the API (`POST /images/load`). The same content always gives the
//! same image id.

use std::path::Path;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::engine::{Engine, EngineError, SANDBOX_USER};

/// Where busybox-static installs its binary.
pub const BUSYBOX: &str = "/bin/busybox";
/// The applets linked into every image.
const APPLETS: [&str; 10] = [
    "sh", "cat", "echo", "env", "id", "ls", "sleep", "wget", "nc", "true",
];

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    // `error`, not `source`: the text is in the message once, not again as
    // the cause.
    #[error("reading {path}: {error}{hint}")]
    Read {
        path: String,
        error: std::io::Error,
        hint: &'static str,
    },
    #[error("building the image archive: {0}")]
    Archive(#[from] std::io::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

fn file(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) -> std::io::Result<()> {
    builder.append_data(
        &mut header(tar::EntryType::Regular, data.len() as u64, mode),
        path,
        data,
    )
}

fn dir(builder: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) -> std::io::Result<()> {
    builder.append_data(
        &mut header(tar::EntryType::Directory, 0, mode),
        path,
        std::io::empty(),
    )
}

fn read(path: &Path, hint: &'static str) -> Result<Vec<u8>, ImageError> {
    std::fs::read(path).map_err(|error| ImageError::Read {
        path: path.display().to_string(),
        error,
        hint,
    })
}

/// The root filesystem: busybox and its applets, `program` at `/fn` (when
/// given), `/etc/passwd` naming the sandbox user, an empty `/tmp`.
pub fn rootfs(program: Option<&[u8]>) -> Result<Vec<u8>, ImageError> {
    let busybox = read(
        Path::new(BUSYBOX),
        " (install busybox-static: hack/podman.sh does)",
    )?;
    let mut builder = tar::Builder::new(Vec::new());
    dir(&mut builder, "bin", 0o755)?;
    file(&mut builder, "bin/busybox", &busybox, 0o755)?;
    for applet in APPLETS {
        let mut link = header(tar::EntryType::Symlink, 0, 0o777);
        builder.append_link(&mut link, format!("bin/{applet}"), "busybox")?;
    }
    if let Some(program) = program {
        file(&mut builder, "fn", program, 0o755)?;
    }
    dir(&mut builder, "tmp", 0o1777)?;
    dir(&mut builder, "etc", 0o755)?;
    let passwd = format!("root:x:0:0:root:/:/bin/sh\nfn:x:{SANDBOX_USER}:{SANDBOX_USER}:fn:/tmp:/bin/sh\n");
    file(&mut builder, "etc/passwd", passwd.as_bytes(), 0o644)?;
    file(
        &mut builder,
        "etc/group",
        format!("root:x:0:\nfn:x:{SANDBOX_USER}:\n").as_bytes(),
        0o644,
    )?;
    Ok(builder.into_inner()?)
}

/// A docker-archive of one layer, tagged `reference`, whose entrypoint is
/// `/fn` when the rootfs has a program and the shell otherwise.
pub fn archive(rootfs: &[u8], reference: &str, has_program: bool) -> Result<Vec<u8>, ImageError> {
    let layer_digest = sha256_hex(rootfs);
    let diff_id = format!("sha256:{layer_digest}");
    let entrypoint = if has_program { vec!["/fn"] } else { vec!["/bin/sh"] };
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": SANDBOX_USER.to_string(), "WorkingDir": "/tmp",
                   "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "winky-emulator"}],
    }))
    .expect("a JSON value serializes");
    let config_name = format!("{}.json", sha256_hex(&config));
    let layer_name = format!("{layer_digest}/layer.tar");
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": config_name, "RepoTags": [reference], "Layers": [layer_name]}
    ]))
    .expect("a JSON value serializes");
    let mut builder = tar::Builder::new(Vec::new());
    file(&mut builder, &config_name, &config, 0o644)?;
    file(&mut builder, &layer_name, rootfs, 0o644)?;
    file(&mut builder, "manifest.json", &manifest, 0o644)?;
    Ok(builder.into_inner()?)
}

/// Packages the statically linked `program` as the image `reference` in the engine.
pub async fn import_program(engine: &Engine, reference: &str, program: &Path) -> Result<(), ImageError> {
    let binary = read(
        program,
        " (build it first: hack/images.sh SOCKET builds the examples' programs)",
    )?;
    let rootfs = rootfs(Some(&binary))?;
    engine.load_archive(archive(&rootfs, reference, true)?).await?;
    Ok(())
}

/// The busybox-only image used to probe an App from inside its network
/// namespace: built once per process (reading busybox and hashing the
/// rootfs), loaded once per engine (the name carries the content hash).
pub async fn probe_image(engine: &Engine) -> Result<String, ImageError> {
    static PROBE: OnceLock<(String, Vec<u8>)> = OnceLock::new();
    let (reference, archive) = match PROBE.get() {
        Some(probe) => probe,
        None => {
            let rootfs = rootfs(None)?;
            let reference = format!("localhost/winky-probe:{}", &sha256_hex(&rootfs)[..16]);
            let archive = archive(&rootfs, &reference, false)?;
            PROBE.get_or_init(|| (reference, archive))
        }
    };
    if !engine.has_image(reference).await? {
        engine.load_archive(archive.clone()).await?;
    }
    Ok(reference.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_names_its_layer_by_content() {
        let rootfs = b"not really a tar, but content";
        let archive = archive(rootfs, "registry.local/x:1", true).unwrap();
        let mut entries = tar::Archive::new(archive.as_slice());
        let names: Vec<String> = entries
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names.len(), 3);
        assert!(names.contains(&format!("{}/layer.tar", sha256_hex(rootfs))));
        assert!(names.contains(&"manifest.json".to_string()));
        assert_eq!(
            archive,
            super::archive(rootfs, "registry.local/x:1", true).unwrap(),
            "deterministic"
        );
    }
}

//! Embeds every generated CRD manifest (`crds/manifests/*.yaml`, written by
//! `cargo run -p winky-crds --bin crdgen`) so that `winky emulate` validates
//! offline against exactly the schemas and CEL rules the cluster has. A new
//! or changed manifest rebuilds this crate.

use std::io::Write;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let crds = manifest_dir.join("../crds/manifests");
    println!("cargo:rerun-if-changed={}", crds.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&crds)
        .unwrap_or_else(|e| panic!("reading {}: {e}", crds.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("crd_manifests.rs");
    let mut code = String::from(
        "/// The generated CRD manifests: file name and text.\npub const MANIFESTS: &[(&str, &str)] = &[\n",
    );
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let path = file.canonicalize().expect("the manifest exists");
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 file name");
        code.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n");
    std::fs::File::create(&out)
        .and_then(|mut f| f.write_all(code.as_bytes()))
        .unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}

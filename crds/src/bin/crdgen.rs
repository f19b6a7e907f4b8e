//! Writes the CustomResourceDefinitions to `crds/manifests/`, one file per kind.
//!
//! `cargo run -p winky-crds --bin crdgen` (or `make generate`) after changing a type;
//! a test fails while the committed files differ from what the types generate.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests"));
    std::fs::create_dir_all(&dir)?;
    for (file, yaml) in winky_crds::manifests::render()? {
        let path = dir.join(file);
        std::fs::write(&path, yaml)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

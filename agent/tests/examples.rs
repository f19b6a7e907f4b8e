//! `examples/notes`, `examples/shop` and `examples/chat` are what `winky
//! propose` generates for the three product prompts. This test fails when the
//! generator and the examples drift apart; `WINKY_BLESS=1 cargo test -p
//! winky-agent --test examples` (or `make generate`) rewrites them.

use std::path::PathBuf;

use winky_agent::generate::{Options, generate};
use winky_agent::planner::offline;

const PROMPTS: [&str; 3] = [
    "A notes app with email login, markdown editor, tags, and images",
    "E-commerce prototype: products, cart, checkout, admin panel",
    "Chat app with rooms, messages, and push notifications",
];

#[test]
fn the_examples_are_what_the_generator_makes_of_the_three_prompts() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bless = std::env::var_os("WINKY_BLESS").is_some();
    let options = Options {
        dir: "examples".into(),
        registry: "registry.local".into(),
        policy: "default".into(),
    };
    let mut stale = Vec::new();
    for prompt in PROMPTS {
        let generated = generate(&offline::plan(prompt), &options);
        for (path, content) in &generated.files {
            let file = root.join(path);
            if bless {
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(&file, content).unwrap();
            } else if std::fs::read_to_string(&file).ok().as_deref() != Some(content.as_str()) {
                stale.push(path.clone());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale examples (run `make generate`): {stale:?}"
    );
}

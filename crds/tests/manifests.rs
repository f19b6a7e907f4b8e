//! The committed CRD manifests must be exactly what the types generate.

use std::path::Path;

#[test]
fn committed_manifests_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    let rendered = winky_crds::manifests::render().expect("CRDs render to YAML");
    assert_eq!(rendered.len(), 6, "one manifest per kind");
    for (file, yaml) in rendered {
        let committed = std::fs::read_to_string(dir.join(&file))
            .unwrap_or_else(|e| panic!("crds/manifests/{file} is missing ({e}); run `make generate`"));
        assert!(
            committed == yaml,
            "crds/manifests/{file} is stale: run `make generate` and commit the result"
        );
    }
    let on_disk = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(on_disk, 6, "crds/manifests holds a file that no type generates");
}

#[test]
fn every_kind_is_in_the_winky_category_with_a_short_name() {
    for crd in winky_crds::crds() {
        let names = &crd.spec.names;
        assert_eq!(
            names.categories.as_deref(),
            Some(&["winky".to_string()][..]),
            "{}",
            names.kind
        );
        assert!(
            names.short_names.as_ref().is_some_and(|s| !s.is_empty()),
            "{}",
            names.kind
        );
        assert_eq!(crd.spec.group, winky_crds::GROUP);
    }
}

#[test]
fn every_schema_property_has_a_description() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else {
            if let Some(items) = schema.get("items") {
                walk(&format!("{path}[]"), items, missing);
            }
            return;
        };
        for (name, prop) in props {
            let here = format!("{path}.{name}");
            let top_level = matches!(name.as_str(), "apiVersion" | "kind" | "metadata");
            if prop.get("description").is_none() && !(path.is_empty() && top_level) {
                missing.push(here.clone());
            }
            walk(&here, prop, missing);
        }
    }
    let mut missing = Vec::new();
    for crd in winky_crds::crds() {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        walk(&crd.spec.names.kind, &schema["openAPIV3Schema"], &mut missing);
    }
    assert!(
        missing.is_empty(),
        "fields without a description (kubectl explain would be empty): {missing:#?}"
    );
}

#[test]
fn schemas_use_only_formats_the_apiserver_knows() {
    // The apiserver warns about (and ignores) formats it does not know, such as
    // uint32: the bound would silently not apply.
    let known = ["int32", "int64", "double", "float", "date-time", "byte", "date"];
    for crd in winky_crds::crds() {
        let text = serde_json::to_string(&crd).unwrap();
        for part in text.split("\"format\":\"").skip(1) {
            let format = part.split('"').next().unwrap();
            assert!(
                known.contains(&format),
                "{}: unknown format {format}",
                crd.spec.names.kind
            );
        }
    }
}

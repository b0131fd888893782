//! The configuration modules import one way: the option table and raw map (`options`) know
//! no typed config, and the modules that own a typed config (`claims`, `client_config`,
//! `tls`, `shared_cache`) never import `config`, which assembles them.

use std::collections::BTreeSet;
use std::path::Path;

/// The `crate::<module>` names a module's non-test code mentions (files of a directory
/// module included).
fn imports(module: &str) -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join(format!("{module}.rs"))];
    if let Ok(dir) = std::fs::read_dir(src.join(module)) {
        files.extend(dir.filter_map(Result::ok).map(|e| e.path()));
    }
    let mut found = BTreeSet::new();
    for file in files.iter().filter(|f| f.is_file()) {
        let text = std::fs::read_to_string(file).expect("source file");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices("crate::") {
                let name: String = line[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    found.insert(name);
                }
            }
        }
    }
    found
}

#[test]
fn the_option_table_depends_on_no_typed_config() {
    let allowed: BTreeSet<String> = ["error", "secret", "proxy_cert"].map(String::from).into();
    let got = imports("options");
    assert!(got.is_subset(&allowed), "options imports {got:?}");
}

#[test]
fn typed_config_owners_do_not_import_config() {
    for module in [
        "claims",
        "client_config",
        "tls",
        "shared_cache",
        "proxy_cert",
        "jwt",
    ] {
        let got = imports(module);
        assert!(!got.contains("config"), "{module} imports config: {got:?}");
    }
    // And the checker sees imports at all (it can fail).
    assert!(imports("config").contains("options"));
}

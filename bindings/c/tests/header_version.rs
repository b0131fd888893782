//! The header's version macros match the workspace version in Cargo.toml (rustls-ffi's
//! `rustls_header_version.rs`, as a string search).

use std::path::Path;

fn workspace_version() -> String {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml"))
            .unwrap();
    let mut in_section = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line == "[workspace.package]";
        } else if in_section && let Some(v) = line.strip_prefix("version") {
            return v
                .trim()
                .trim_start_matches('=')
                .trim()
                .trim_matches('"')
                .to_owned();
        }
    }
    panic!("no [workspace.package] version in Cargo.toml");
}

fn macro_value(header: &str, name: &str) -> String {
    let prefix = format!("#define {name} ");
    header
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{name} missing from include/tokenward.h"))
        .trim()
        .to_owned()
}

#[test]
fn header_version_matches_cargo_toml() {
    let version = workspace_version();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let header = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../include/tokenward.h"),
    )
    .unwrap();
    let parts: Vec<&str> = version.split(['.', '-', '+']).take(3).collect();
    assert_eq!(macro_value(&header, "TOKENWARD_VERSION_MAJOR"), parts[0]);
    assert_eq!(macro_value(&header, "TOKENWARD_VERSION_MINOR"), parts[1]);
    assert_eq!(macro_value(&header, "TOKENWARD_VERSION_PATCH"), parts[2]);
    assert_eq!(
        macro_value(&header, "TOKENWARD_VERSION"),
        format!("\"{version}\"")
    );
}

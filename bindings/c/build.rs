//! Gives the shared library a versioned SONAME (`libtokenward.so.<major>`) on ELF targets,
//! the name `scripts/c-install.sh` installs it under, so programs linked with `-ltokenward`
//! record `libtokenward.so.0` (for 0.x) and keep working across compatible releases.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let elf = matches!(
        os.as_str(),
        "linux"
            | "android"
            | "freebsd"
            | "netbsd"
            | "openbsd"
            | "dragonfly"
            | "solaris"
            | "illumos"
    );
    if elf {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".to_owned());
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libtokenward.so.{major}");
    }
}

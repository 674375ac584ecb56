//! Test-only crate: the suites live in tests/tests/, the benches in tests/benches/, the fault
//! suite in src/chaos (run by src/bin/chaos.rs), and the fixtures they share here.

pub mod chaos;
pub mod fanout;
pub mod grpc;
pub mod json_rpc;
pub mod otlp;

/// Keeps the generated document `docs/<name>` equal to `text`: with `UPDATE_AUTHZ_DOC` set it
/// writes it, otherwise a document that differs fails the test.
pub fn keep_authz_doc(name: &str, text: &str) {
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name);
    if std::env::var("UPDATE_AUTHZ_DOC").is_ok() {
        std::fs::write(&doc, text).unwrap();
    } else {
        let kept = std::fs::read_to_string(&doc).unwrap_or_default();
        assert!(
            kept == text,
            "docs/{name} is out of date: run with UPDATE_AUTHZ_DOC=1"
        );
    }
}

/// The `connectability` binary: `CONNECTABILITY_BIN`, else beside this test's directory
/// (`make test` builds it first).
pub fn connectability_bin() -> std::path::PathBuf {
    if let Ok(bin) = std::env::var("CONNECTABILITY_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .join("connectability");
    assert!(
        bin.exists(),
        "{} is missing: `cargo build -p connectability` (make test does) or set CONNECTABILITY_BIN",
        bin.display()
    );
    bin
}

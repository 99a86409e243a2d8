//! The dependency direction of the README's "How the code is laid out", checked on the
//! sources: the model knows nothing of pipelines, the engine knows stages only through the
//! registry, and no stage imports another stage (they share `stages::common`).

use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The code of `path` without comment lines.
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Files under `src/<dir>` whose code names any of `forbidden` (`crate::engine`, …).
fn offenders(dir: &str, forbidden: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for file in sources(&Path::new(SRC).join(dir)) {
        let text = code(&file);
        for f in forbidden {
            if text.contains(f) {
                out.push(format!("{} names {f}", file.display()));
            }
        }
    }
    out
}

#[test]
fn the_model_and_the_losses_never_import_the_engine_stages_or_tables() {
    let pipeline = [
        "crate::engine",
        "crate::stages",
        "crate::tables",
        "crate::eval",
        "crate::report",
        "crate::cli",
    ];
    let mut bad = offenders("model", &pipeline);
    bad.extend(offenders("loss", &pipeline));
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn the_engine_knows_stages_only_through_the_registry() {
    let bad = offenders(
        "engine",
        &[
            "crate::stages",
            "crate::tables",
            "crate::model",
            "crate::cli",
        ],
    );
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn no_stage_imports_another_stage() {
    let dir = Path::new(SRC).join("stages");
    let stages: Vec<String> = sources(&dir)
        .iter()
        .filter(|f| f.parent() == Some(dir.as_path()) && !f.ends_with("mod.rs"))
        .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(stages.len() >= 10, "{stages:?}");
    let mut bad = Vec::new();
    for file in sources(&dir) {
        let text = code(&file);
        for other in &stages {
            let own = file.file_stem().is_some_and(|s| s == other.as_str());
            for path in [
                format!("super::{other}::"),
                format!("crate::stages::{other}::"),
            ] {
                if !own && text.contains(&path) {
                    bad.push(format!("{} names {path}", file.display()));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

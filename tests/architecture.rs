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

/// The module names a `super::` path in `text` reaches (`super::a::b` → `a`,
/// `super::{a, b::c}` → `a`, `b`).
fn super_modules(text: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (i, _) in text.match_indices("super::") {
        let rest = &text[i + "super::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                out.extend(group.split(',').map(ident));
            }
            None => out.push(ident(rest)),
        }
    }
    out.retain(|m| !m.is_empty() && m != "super");
    out
}

#[test]
fn no_stage_imports_another_stage() {
    let dir = Path::new(SRC).join("stages");
    let mut bad = Vec::new();
    for file in sources(&dir) {
        let text = code(&file);
        if file.parent() == Some(dir.as_path()) {
            // A stage file may reach only the shared helpers.
            for m in super_modules(&text) {
                if m != "common" {
                    bad.push(format!("{} uses super::{m}", file.display()));
                }
            }
        }
        if text.contains("crate::stages::") && !text.contains("crate::stages::common") {
            bad.push(format!("{} names crate::stages::…", file.display()));
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
    assert_eq!(
        super_modules("use super::{common, generate::X};"),
        ["common", "generate"]
    );
}

//! The layout rules of DEVELOPERS.md, checked on the sources: no two sibling modules of a crate
//! import each other (each file reads top-down: what both sides need lives below both), and no
//! source folder named `test` or `tests` holds code that is not a test.
//!
//! A parent module re-exporting its children while they use the parent's shared items (a crate
//! root, `model/mod.rs`) is how Rust modules are built, not a cycle: only pairs where neither
//! module contains the other count.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module by its path inside its crate (`["model", "register"]`; the root is `[]`).
type Module = Vec<String>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the harness sits in the workspace")
        .to_path_buf()
}

/// Every crate's `src` folder in the workspace (not `target/`, not `fuzz/`, a workspace of its
/// own).
fn crate_sources(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if !path.is_dir()
            || name.starts_with('.')
            || ["target", "fuzz", "results"].contains(&name.as_str())
        {
            continue;
        }
        if name == "src" && dir.join("Cargo.toml").exists() {
            found.push(path);
        } else {
            crate_sources(&path, found);
        }
    }
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable source folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file
        .strip_prefix(src)
        .expect("file under src")
        .with_extension("");
    let mut parts: Module = rel
        .iter()
        .map(|p| p.to_string_lossy().to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("lib" | "main" | "mod")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without its tests and comments.
fn code(file: &Path) -> String {
    let text = fs::read_to_string(file).expect("readable source file");
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths named after each `prefix` in `code`: `crate::a::b`, and each item of
/// `crate::{a::b, c}`.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        let items: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            group
                .split('}')
                .next()
                .unwrap_or_default()
                .split(',')
                .collect()
        } else {
            vec![rest]
        };
        for item in items {
            let path: Vec<String> = item
                .trim()
                .split("::")
                .map(|seg| {
                    seg.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|seg| seg.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
                .collect();
            paths.push(path);
        }
    }
    paths
}

/// The longest prefix of `path` that is a module.
fn resolve(path: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    (1..=path.len())
        .rev()
        .map(|k| path[..k].to_vec())
        .find(|m| modules.contains(m))
}

#[test]
fn no_two_sibling_modules_import_each_other() {
    let mut sources = Vec::new();
    crate_sources(&workspace(), &mut sources);
    assert!(sources.len() >= 8, "found only {sources:?}");
    let mut cycles = Vec::new();
    for src in &sources {
        let mut files = Vec::new();
        rust_files(src, &mut files);
        let modules: BTreeMap<Module, PathBuf> = files
            .iter()
            .map(|f| (module_of(src, f), f.clone()))
            .collect();
        let names: BTreeSet<Module> = modules.keys().cloned().collect();
        let mut uses: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
        for (module, file) in &modules {
            let code = code(file);
            let parent = &module[..module.len().saturating_sub(1)];
            let mut targets = BTreeSet::new();
            for path in paths_after(&code, "crate::") {
                targets.extend(resolve(&path, &names));
            }
            for path in paths_after(&code, "super::") {
                let full: Vec<String> = parent.iter().cloned().chain(path).collect();
                targets.extend(resolve(&full, &names));
            }
            targets.remove(module);
            uses.insert(module.clone(), targets);
        }
        for (a, targets) in &uses {
            for b in targets {
                let nested = a.starts_with(b) || b.starts_with(a);
                if a < b && !nested && uses.get(b).is_some_and(|t| t.contains(a)) {
                    cycles.push(format!(
                        "{} <-> {}",
                        modules[a].display(),
                        modules[b].display()
                    ));
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "files that import each other:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn no_source_folder_named_test_holds_code() {
    let mut sources = Vec::new();
    crate_sources(&workspace(), &mut sources);
    let mut misplaced = Vec::new();
    for src in &sources {
        let mut files = Vec::new();
        rust_files(src, &mut files);
        for file in files {
            let rel = file.strip_prefix(src).expect("file under src");
            if rel.iter().any(|p| p == "test" || p == "tests") {
                misplaced.push(file.display().to_string());
            }
        }
    }
    assert!(
        misplaced.is_empty(),
        "code in folders named test: {misplaced:?}"
    );
}

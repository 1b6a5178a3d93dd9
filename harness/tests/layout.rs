//! The layout rules of DEVELOPERS.md, checked on the sources: no two sibling modules of a crate
//! import each other (each file reads top-down: what both sides need lives below both), and no
//! source folder named `test` or `tests` holds code that is not a test.
//!
//! A parent module re-exporting its children while they use the parent's shared items (a crate
//! root, `model/mod.rs`) is how Rust modules are built, not a cycle: only pairs where neither
//! module contains the other count. An item reached through a parent's `pub use` counts as an
//! import of the module that defines it. Paths are read from `use` trees and expressions
//! (`crate::a::{b, c::D}`, `super::super::x`) outside comments and `#[cfg(test)]` modules; only
//! two-module cycles are looked for.

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

/// The code of a file without comments and without its inline `#[cfg(test)] mod … { … }`
/// (which by convention closes the file); test modules in files of their own are left out by
/// [`test_only_modules`].
fn code(text: &str) -> String {
    let mut kept = text;
    for (at, _) in text.match_indices("#[cfg(test)]") {
        let after = text[at + "#[cfg(test)]".len()..].trim_start();
        let declaration = after.split(';').next().unwrap_or_default();
        if after.starts_with("mod ") && declaration.contains('{') {
            kept = &text[..at];
            break;
        }
    }
    kept.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Modules declared `#[cfg(test)] mod name;` (their code is a test's, in a file of its own).
fn test_only_modules(texts: &BTreeMap<Module, String>) -> BTreeSet<Module> {
    let mut found = BTreeSet::new();
    for (module, text) in texts {
        for (at, _) in text.match_indices("#[cfg(test)]") {
            let after = text[at + "#[cfg(test)]".len()..].trim_start();
            if let Some(rest) = after.strip_prefix("mod ") {
                let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
                if rest[name.len()..].trim_start().starts_with(';') {
                    let mut child = module.clone();
                    child.push(name);
                    found.insert(child);
                }
            }
        }
    }
    found
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths of a `use` tree or path expression starting at `text` (just after `crate::`,
/// `super::`, ...): `a::b`, `a::{b, c::{d, E}}`, each as its segments.
fn tree(text: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    let mut at = 0;
    let bytes: Vec<char> = text.chars().collect();
    loop {
        while at < bytes.len() && bytes[at].is_whitespace() {
            at += 1;
        }
        if at < bytes.len() && bytes[at] == '{' {
            at += 1;
            loop {
                let used = tree(&bytes[at..].iter().collect::<String>(), path.clone(), out);
                at += used;
                while at < bytes.len() && bytes[at].is_whitespace() {
                    at += 1;
                }
                match bytes.get(at) {
                    Some(',') => at += 1,
                    Some('}') => return at + 1,
                    _ => return at,
                }
                while at < bytes.len() && bytes[at].is_whitespace() {
                    at += 1;
                }
                if bytes.get(at) == Some(&'}') {
                    return at + 1;
                }
            }
        }
        if bytes.get(at) == Some(&'*') {
            out.push(path);
            return at + 1;
        }
        let start = at;
        while at < bytes.len() && is_ident(bytes[at]) {
            at += 1;
        }
        if start == at {
            out.push(path);
            return at;
        }
        path.push(bytes[start..at].iter().collect());
        if bytes.get(at) == Some(&':') && bytes.get(at + 1) == Some(&':') {
            at += 2;
        } else {
            // `name as alias`: the alias names nothing new to resolve.
            let mut look = at;
            while look < bytes.len() && bytes[look].is_whitespace() {
                look += 1;
            }
            if bytes.get(look) == Some(&'a')
                && bytes.get(look + 1) == Some(&'s')
                && bytes.get(look + 2).is_some_and(|c| c.is_whitespace())
            {
                look += 2;
                while look < bytes.len() && bytes[look].is_whitespace() {
                    look += 1;
                }
                while look < bytes.len() && is_ident(bytes[look]) {
                    look += 1;
                }
                at = look;
            }
            out.push(path);
            return at;
        }
    }
}

/// Every path named after `prefix` in `code` (`crate::`, `super::`).
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        if code[..at].ends_with("super::") || code[..at].chars().last().is_some_and(is_ident) {
            continue; // the inner part of `super::super::`, or a path like `other_crate::`
        }
        let mut rest = &code[at + prefix.len()..];
        let mut ups = 0;
        while prefix == "super::" && rest.starts_with("super::") {
            rest = &rest["super::".len()..];
            ups += 1;
        }
        let mut found = Vec::new();
        tree(rest, Vec::new(), &mut found);
        paths.extend(found.into_iter().map(|mut p| {
            // How many more levels up: kept as leading markers for the caller.
            for _ in 0..ups {
                p.insert(0, "super".to_string());
            }
            p
        }));
    }
    paths
}

/// What `pub use` makes a module re-export: (module, item name) → the module defining it.
fn reexports(
    codes: &BTreeMap<Module, String>,
    names: &BTreeSet<Module>,
) -> BTreeMap<(Module, String), Module> {
    let mut found = BTreeMap::new();
    for (module, code) in codes {
        for (at, matched) in code
            .match_indices("pub use ")
            .chain(code.match_indices("pub(crate) use "))
        {
            let mut paths = Vec::new();
            tree(&code[at + matched.len()..], Vec::new(), &mut paths);
            for path in paths {
                let Some((item, from)) = path.split_last() else {
                    continue;
                };
                let from: Vec<String> = match from.first().map(String::as_str) {
                    Some("crate") => from[1..].to_vec(),
                    Some("self") => module
                        .iter()
                        .cloned()
                        .chain(from[1..].iter().cloned())
                        .collect(),
                    _ => module.iter().cloned().chain(from.iter().cloned()).collect(),
                };
                if names.contains(&from) && &from != module {
                    found.insert((module.clone(), item.clone()), from);
                }
            }
        }
    }
    found
}

/// The module a path names: its longest prefix that is a module, or, when the next segment is
/// an item that module re-exports, the module defining that item.
fn resolve(
    path: &[String],
    names: &BTreeSet<Module>,
    reexported: &BTreeMap<(Module, String), Module>,
) -> Option<Module> {
    let k = (0..=path.len())
        .rev()
        .find(|&k| names.contains(&path[..k].to_vec()))?;
    let module = path[..k].to_vec();
    if let Some(next) = path.get(k) {
        if let Some(origin) = reexported.get(&(module.clone(), next.clone())) {
            return Some(origin.clone());
        }
    }
    Some(module)
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
        let mut modules: BTreeMap<Module, PathBuf> = files
            .iter()
            .map(|f| (module_of(src, f), f.clone()))
            .collect();
        // Each file read once; its code without comments and inline tests, once.
        let texts: BTreeMap<Module, String> = modules
            .iter()
            .map(|(m, f)| {
                let text = fs::read_to_string(f).expect("readable source file");
                (m.clone(), text)
            })
            .collect();
        for test_only in test_only_modules(&texts) {
            modules.remove(&test_only);
        }
        let codes: BTreeMap<Module, String> = modules
            .keys()
            .map(|m| (m.clone(), code(&texts[m])))
            .collect();
        let names: BTreeSet<Module> = modules.keys().cloned().collect();
        let reexported = reexports(&codes, &names);
        let mut uses: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
        for (module, code) in &codes {
            let mut targets = BTreeSet::new();
            for path in paths_after(code, "crate::") {
                targets.extend(resolve(&path, &names, &reexported));
            }
            for path in paths_after(code, "super::") {
                // `super::` is the parent of this file's module; each further `super` one more.
                let ups = 1 + path.iter().take_while(|s| *s == "super").count();
                let rest = path.iter().skip_while(|s| *s == "super").cloned();
                let base = &module[..module.len().saturating_sub(ups)];
                let full: Vec<String> = base.iter().cloned().chain(rest).collect();
                targets.extend(resolve(&full, &names, &reexported));
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

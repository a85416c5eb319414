//! The crates' modules import in one direction only: each module of `shared/src` and
//! `local/src` stands on a layer (the tables in docs/ARCHITECTURE.md, "Layers"), imports
//! only from its own layer or below, and no files import each other in a circle. Read from
//! the code's own `use` lines and `crate::`, `super::` and `self::` paths, so a change that
//! breaks the rule fails here, naming the file and the item.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One crate's source tree and the layer of each of its top-level modules.
struct Crate {
    src: PathBuf,
    layers: BTreeMap<String, u32>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The layer tables of docs/ARCHITECTURE.md: under a line naming `DIR/src`, rows
/// `| N | `a`, `b` | ... |`.
fn documented_layers() -> BTreeMap<String, BTreeMap<String, u32>> {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let mut tables: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        if let Some(dir) = line
            .strip_prefix("Layers of `")
            .and_then(|rest| rest.split('`').next())
        {
            current = Some(dir.to_string());
            continue;
        }
        let (Some(dir), Some(row)) = (&current, line.strip_prefix('|')) else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Some(Ok(layer)) = cells.first().map(|c| c.parse::<u32>()) else {
            continue;
        };
        let table = tables.entry(dir.clone()).or_default();
        for name in cells[1].split(',') {
            table.insert(name.trim().trim_matches('`').to_string(), layer);
        }
    }
    tables
}

fn crates() -> Vec<Crate> {
    let tables = documented_layers();
    ["shared/src", "local/src"]
        .into_iter()
        .map(|dir| Crate {
            src: root().join(dir),
            layers: tables
                .get(dir)
                .unwrap_or_else(|| panic!("docs/ARCHITECTURE.md has no layer table for {dir}"))
                .clone(),
        })
        .collect()
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// A file's module path: `handlers/push.rs` -> `["handlers", "push"]`; `lib.rs` -> `[]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without its comments, string literals and `#[cfg(test)]` tail.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut code = String::with_capacity(text.len());
    for line in text.lines() {
        let line = match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        // String literals may hold anything; their paths are not imports.
        let mut in_string = false;
        let mut previous = ' ';
        for c in line.chars() {
            if c == '"' && previous != '\\' {
                in_string = !in_string;
            } else if !in_string {
                code.push(c);
            }
            previous = c;
        }
        code.push('\n');
    }
    code
}

/// Every path the code names from `crate::`, `super::` or `self::`, as absolute module
/// paths (`use` groups expanded), with the text it was written as.
fn paths_in(code: &str, module: &[String]) -> Vec<(Vec<String>, String)> {
    let mut found = Vec::new();
    let mut elsewhere = String::new();
    // `use` statements, braces and all.
    for statement in code.split(';') {
        let trimmed = statement.trim();
        let at = trimmed.find("use ").filter(|&at| {
            let before = &trimmed[..at];
            before.is_empty() || before.ends_with(char::is_whitespace)
        });
        let Some(at) = at else {
            elsewhere.push_str(statement);
            elsewhere.push(';');
            continue;
        };
        let statement = trimmed;
        let tree: String = statement[at + 4..]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        for path in expand(&tree) {
            // A path from no root names a child module (`use items::*`) or another crate;
            // `file_for` finds no file of this crate for the latter.
            let resolved =
                resolve(&path, module).or_else(|| resolve(&format!("self::{path}"), module));
            if let Some(resolved) = resolved {
                found.push((resolved, path));
            }
        }
    }
    // Paths written inline: `crate::overview::StatusPage { .. }`.
    for start in ["crate::", "super::", "self::"] {
        let mut rest = elsewhere.as_str();
        while let Some(at) = rest.find(start) {
            let boundary = at == 0
                || !rest[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':');
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            let path = tail[..end].trim_end_matches(':');
            if boundary && let Some(resolved) = resolve(path, module) {
                found.push((resolved, path.to_string()));
            }
            rest = &rest[at + end.max(1)..];
        }
    }
    found
}

/// `a::{b, c::{d, e}}` -> `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let Some(open) = tree.find('{') else {
        return vec![tree.to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| expand(p).into_iter().map(move |e| format!("{prefix}{e}")))
        .collect()
}

/// A path as the module path it names from the crate root, or `None` when it is not the
/// crate's own (`std::`, another crate).
fn resolve(path: &str, module: &[String]) -> Option<Vec<String>> {
    let mut segments = path.split("::").filter(|s| !s.is_empty());
    // A file's module is its folder's for `mod.rs`, so `super` is one step up either way.
    let mut base: Vec<String> = match segments.next()? {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => {
            let mut base = module.to_vec();
            base.pop();
            base
        }
        _ => return None,
    };
    for segment in segments {
        match segment {
            "super" => {
                base.pop();
            }
            "self" | "*" => {}
            name => base.push(name.split(" as ").next().unwrap().to_string()),
        }
    }
    Some(base)
}

/// The file that holds the module a path names: its longest prefix that is a file.
fn file_for(src: &Path, path: &[String]) -> Option<PathBuf> {
    (1..=path.len()).rev().find_map(|n| {
        let dir = path[..n].iter().fold(src.to_path_buf(), |p, s| p.join(s));
        [dir.with_extension("rs"), dir.join("mod.rs")]
            .into_iter()
            .find(|f| f.is_file())
    })
}

/// file -> (file it imports -> the paths written)
type Imports = BTreeMap<PathBuf, BTreeMap<PathBuf, BTreeSet<String>>>;

fn imports_of(krate: &Crate) -> Imports {
    let mut imports = Imports::new();
    for file in rust_files(&krate.src) {
        let module = module_of(&krate.src, &file);
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        let entry = imports.entry(file.clone()).or_default();
        for (path, written) in paths_in(&code, &module) {
            let Some(target) = file_for(&krate.src, &path) else {
                continue;
            };
            if target != file {
                entry.entry(target).or_default().insert(written);
            }
        }
    }
    imports
}

/// The top-level module a file belongs to (`handlers/push.rs` -> `handlers`); the crate
/// root's files (`lib.rs`, `main.rs`) by their own names.
fn top_module(src: &Path, file: &Path) -> String {
    let module = module_of(src, file);
    match module.first() {
        Some(top) => top.clone(),
        None => file.file_stem().unwrap().to_string_lossy().into_owned(),
    }
}

fn relative(file: &Path) -> String {
    file.strip_prefix(root()).unwrap().display().to_string()
}

#[test]
fn every_module_is_on_a_documented_layer() {
    for krate in crates() {
        for file in rust_files(&krate.src) {
            let top = top_module(&krate.src, &file);
            assert!(
                krate.layers.contains_key(&top),
                "{}: module `{top}` is on no layer of docs/ARCHITECTURE.md's table for {}",
                relative(&file),
                relative(&krate.src)
            );
        }
    }
}

#[test]
fn no_module_imports_one_on_a_higher_layer() {
    let mut upward = Vec::new();
    for krate in crates() {
        for (file, targets) in imports_of(&krate) {
            let from = top_module(&krate.src, &file);
            let Some(&from_layer) = krate.layers.get(&from) else {
                continue;
            };
            for (target, written) in targets {
                let to = top_module(&krate.src, &target);
                let to_layer = krate.layers.get(&to).copied().unwrap_or(0);
                if to_layer > from_layer {
                    upward.push(format!(
                        "{} (layer {from_layer}) imports {} from {} (layer {to_layer})",
                        relative(&file),
                        written.into_iter().collect::<Vec<_>>().join(", "),
                        relative(&target),
                    ));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run up:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let mut circles = Vec::new();
    for krate in crates() {
        let imports = imports_of(&krate);
        for component in strongly_connected(&imports) {
            let ties: Vec<String> = component
                .iter()
                .flat_map(|file| {
                    imports[file]
                        .iter()
                        .filter(|(target, _)| component.contains(*target))
                        .map(move |(target, written)| {
                            format!(
                                "  {} -> {}: {}",
                                relative(file),
                                relative(target),
                                written.iter().cloned().collect::<Vec<_>>().join(", ")
                            )
                        })
                })
                .collect();
            circles.push(ties.join("\n"));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n\n")
    );
}

/// The groups of two or more files that reach each other (Tarjan's algorithm).
fn strongly_connected(imports: &Imports) -> Vec<BTreeSet<PathBuf>> {
    struct Walk<'a> {
        imports: &'a Imports,
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        on_stack: BTreeSet<&'a PathBuf>,
        found: Vec<BTreeSet<PathBuf>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, file: &'a PathBuf) {
            let n = self.index.len();
            self.index.insert(file, n);
            self.low.insert(file, n);
            self.stack.push(file);
            self.on_stack.insert(file);
            for target in self.imports[file].keys() {
                if !self.imports.contains_key(target) {
                    continue;
                }
                if !self.index.contains_key(target) {
                    self.visit(target);
                    let low = self.low[target].min(self.low[file]);
                    self.low.insert(file, low);
                } else if self.on_stack.contains(target) {
                    let low = self.index[target].min(self.low[file]);
                    self.low.insert(file, low);
                }
            }
            if self.low[file] == self.index[file] {
                let mut component = BTreeSet::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.insert(top.clone());
                    if top == file {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        imports,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for file in imports.keys() {
        if !walk.index.contains_key(file) {
            walk.visit(file);
        }
    }
    walk.found
}

#[test]
fn the_reader_sees_the_imports_it_checks() {
    // The parser itself, on the shapes the code uses.
    let module = vec!["handlers".to_string(), "push".to_string()];
    let code = code_of(
        "use crate::store::{Claim, ClaimRecord};\nuse super::{Effects, claims::once};\n\
         use merging::Merging;\n\
         let p = crate::overview::StatusPage { x }; // crate::why is only a comment\n\
         let s = \"crate::relay in a string\";\n#[cfg(test)]\nmod tests { use crate::setup; }",
    );
    let paths: BTreeSet<String> = paths_in(&code, &module)
        .into_iter()
        .map(|(path, _)| path.join("::"))
        .collect();
    let expected: BTreeSet<String> = [
        "store::Claim",
        "store::ClaimRecord",
        "handlers::Effects",
        "handlers::claims::once",
        "handlers::push::merging::Merging",
        "overview::StatusPage",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(paths, expected);
    assert_eq!(expand("a::{b,c::{d,e}}"), ["a::b", "a::c::d", "a::c::e"]);
}

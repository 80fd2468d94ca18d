//! The layering of zc-trace's library, checked on its source: every module may use its own
//! layer and the layers below it, never one above, and no modules import each other in a
//! cycle. Tests are held to the same rule: a test builds its fixtures from its own layer and
//! those below. (An inline `mod tests` is a module of its own: it may use the module it tests
//! and that module's neighbours, which is no cycle since nothing uses it.)
//!
//! The layers, bottom first, are [`LAYERS`]; `docs/ARCHITECTURE.md` says what each owns. A
//! new top-level module must be put in one of them (or in a layer folder) for this test to
//! pass.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Bottom first. A folder `src/NAME/` or a file `src/NAME.rs` is one layer.
const LAYERS: &[&str] = &["model", "kernel", "probe", "attribute", "advise", "render", "workloads", "cli", "commands"];

/// Above every layer: they may use anything, and nothing uses them.
const TOP: &[&str] = &["lib.rs", "main.rs"];

#[test]
fn no_module_uses_a_layer_above_its_own() {
    let files = sources();
    let modules: BTreeSet<Vec<String>> = files.keys().cloned().collect();
    let mut wrong = BTreeSet::new();
    for (module, file) in &files {
        let Some(own) = rank(module) else { continue };
        for (from, target) in uses(module, file, &modules) {
            match rank(&target) {
                Some(r) if r > own => wrong.insert(format!(
                    "{} ({}) uses {} ({}), a layer above it",
                    show(&from),
                    LAYERS[own],
                    show(&target),
                    LAYERS[r]
                )),
                None if !target.is_empty() && !is_top(&target) => {
                    wrong.insert(format!("{} uses {}, which is in no layer", show(&from), show(&target)))
                }
                _ => false,
            };
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that go up the layers:\n  {}",
        wrong.into_iter().collect::<Vec<_>>().join("\n  ")
    );
}

#[test]
fn every_file_is_in_a_layer() {
    let files = sources();
    let stray: Vec<String> = files.keys().filter(|m| rank(m).is_none() && !is_top(m)).map(|m| show(m)).collect();
    assert!(
        stray.is_empty(),
        "files in no layer (move them into a layer folder, or add a layer to LAYERS in tests/layers.rs): {stray:?}"
    );
}

#[test]
fn no_modules_import_each_other_in_a_cycle() {
    let files = sources();
    let modules: BTreeSet<Vec<String>> = files.keys().cloned().collect();
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, file) in &files {
        graph.entry(module.clone()).or_default();
        for (from, target) in uses(module, file, &modules) {
            if target != from && modules.contains(&target) {
                graph.entry(from).or_default().insert(target);
            }
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}", cycle.iter().map(|m| show(m)).collect::<Vec<_>>().join(" -> "));
    }
}

/// The checker itself: paths in groups, `super` from files and from folders' `mod.rs`,
/// children named by a `mod.rs`, and nothing from comments or strings.
#[test]
fn the_checker_reads_paths_as_rustc_does() {
    let modules: BTreeSet<Vec<String>> =
        ["a", "a/x", "a/y", "b", "b/z"].iter().map(|m| m.split('/').map(String::from).collect()).collect();
    let m = |s: &str| s.split('/').map(String::from).collect::<Vec<_>>();
    let code = r#"
        //! crate::b in a comment
        use crate::{b::z::{self, Thing}, a};
        use super::y::Other;
        pub(crate) fn f(&self) { let s = "crate::b::z"; let c = '{'; super::super::b::g(); }
        pub(super) fn h() -> &'static str { r"super::y" }
        #[cfg(test)]
        mod tests {
            use super::*;
            use super::super::y;
        }
    "#;
    let found = uses(&m("a/x"), code, &modules);
    let from = |f: &str, t: &str| (m(f), m(t));
    let expected =
        [from("a/x", "b/z"), from("a/x", "a"), from("a/x", "a/y"), from("a/x", "b"), from("a/x/tests", "a/y")];
    assert_eq!(found, expected.into_iter().collect());
    let aliased = "use crate::{b::{self, Thing}, a::y};\nfn f() { b::z::g(); y::h(); }\n";
    let expected = [from("a/x", "b"), from("a/x", "b/z"), from("a/x", "a/y")];
    assert_eq!(uses(&m("a/x"), aliased, &modules), expected.into_iter().collect());
    let parent = "mod x;\npub mod y;\nfn g() { x::run(); crate::b::z::h(); }\n";
    assert_eq!(uses(&m("a"), parent, &modules), [from("a", "a/x"), from("a", "b/z")].into_iter().collect());
}

/// Every `.rs` file under `src/`, by module path (`src/probe/session.rs` is `probe::session`,
/// a folder's `mod.rs` the folder), with its text.
fn sources() -> BTreeMap<Vec<String>, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.insert(module_of(&root, &path), fs::read_to_string(&path).unwrap());
            }
        }
    }
    assert!(out.len() > 10, "found only {} source files under {}", out.len(), root.display());
    out
}

fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel: PathBuf = file.strip_prefix(root).unwrap().to_path_buf();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    if TOP.contains(&last.as_str()) && parts.is_empty() {
        return vec![last];
    }
    if last != "mod.rs" {
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    parts
}

fn is_top(module: &[String]) -> bool {
    module.len() == 1 && TOP.contains(&module[0].as_str())
}

fn rank(module: &[String]) -> Option<usize> {
    LAYERS.iter().position(|l| module.first().is_some_and(|m| m == l))
}

fn show(module: &[String]) -> String {
    if module.is_empty() { "the crate root".into() } else { module.join("::") }
}

/// The modules of this crate that `code` (the text of `module`) refers to by path, each with
/// the module that refers to it: `module` itself, or an inline module inside it
/// (`module::tests`).
fn uses(module: &[String], code: &str, modules: &BTreeSet<Vec<String>>) -> BTreeSet<(Vec<String>, Vec<String>)> {
    let tokens = tokens(&code_only(code));
    // A folder's mod.rs names its children without `self::`.
    let is_folder = modules.iter().any(|m| m.len() == module.len() + 1 && m.starts_with(module));
    let children: BTreeSet<&str> = if is_folder {
        tokens.windows(3).filter(|w| w[0] == "mod" && w[2] == ";").map(|w| w[1].as_str()).collect()
    } else {
        BTreeSet::new()
    };
    let mut found = Vec::new(); // (the module using it, its inline depth, a path)
    let mut inline: Vec<(usize, String)> = Vec::new(); // open inline `mod name {`: its depth, name
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        if t == "{" {
            depth += 1;
            if i >= 2 && tokens[i - 2] == "mod" {
                inline.push((depth, tokens[i - 1].clone()));
            }
            i += 1;
            continue;
        }
        if t == "}" {
            if inline.last().is_some_and(|(d, _)| *d == depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
            i += 1;
            continue;
        }
        let starts_path = is_ident(t) && (i == 0 || tokens[i - 1] != "::");
        if !starts_path {
            i += 1;
            continue;
        }
        let (paths, next) = path_at(&tokens, i);
        let from: Vec<String> = module.iter().cloned().chain(inline.iter().map(|(_, n)| n.clone())).collect();
        found.extend(paths.into_iter().map(|path| (from.clone(), inline.len(), path)));
        i = next;
    }
    // Modules imported by name (`use crate::render::{self, output}`) and then used through
    // it (`render::table::render`).
    let resolved: Vec<_> =
        found.iter().map(|(from, depth, path)| (from, path, resolve(module, &children, *depth, path))).collect();
    let aliases: BTreeMap<String, Vec<String>> = resolved
        .iter()
        .filter_map(|(_, _, target)| {
            let target = target.as_ref()?;
            let named =
                if target.last().is_some_and(|s| s == "self") { &target[..target.len() - 1] } else { &target[..] };
            Some((named.last()?.clone(), named.to_vec())).filter(|_| modules.contains(named))
        })
        .collect();
    let mut out = BTreeSet::new();
    for (from, path, target) in resolved {
        let target = target.or_else(|| {
            let alias = aliases.get(path.first()?).filter(|_| path.len() > 1)?;
            Some(alias.iter().chain(&path[1..]).cloned().collect())
        });
        if let Some(target) = target {
            out.insert((from.clone(), longest_module(&target, modules)));
        }
    }
    out
}

/// The crate-absolute path a use of `path` names, or `None` when it names something of the
/// same file, of another crate, or a local item.
fn resolve(module: &[String], children: &BTreeSet<&str>, inline_depth: usize, path: &[String]) -> Option<Vec<String>> {
    // `crate`, `super` or `self` alone is a visibility (`pub(super)`) or a receiver (`&self`).
    if path.len() < 2 {
        return None;
    }
    let first = path[0].as_str();
    match first {
        "crate" => Some(path[1..].to_vec()),
        "super" => {
            let supers = path.iter().take_while(|s| *s == "super").count();
            // The first `super`s climb out of inline modules of this same file.
            let out_of_file = supers.checked_sub(inline_depth).filter(|&n| n > 0)?;
            // A file `a/x.rs` is module a::x; a folder's `mod.rs` is the folder itself.
            let base_len = module.len().checked_sub(out_of_file)?;
            let mut target = module[..base_len].to_vec();
            target.extend(path[supers..].iter().cloned());
            Some(target)
        }
        "self" if inline_depth == 0 => {
            let mut target = module.to_vec();
            target.extend(path[1..].iter().cloned());
            Some(target)
        }
        child if inline_depth == 0 && path.len() > 1 && children.contains(child) => {
            let mut target = module.to_vec();
            target.extend(path.iter().cloned());
            Some(target)
        }
        _ => None,
    }
}

/// The longest prefix of `target` that is a module of the crate (a layer's items live in
/// its files; `crate::model::row::Row` is a use of `model::row`).
fn longest_module(target: &[String], modules: &BTreeSet<Vec<String>>) -> Vec<String> {
    (0..=target.len())
        .rev()
        .map(|n| target[..n].to_vec())
        .find(|p| modules.contains(p))
        .unwrap_or_else(|| target.iter().take(1).cloned().collect())
}

/// The paths of one path expression starting at `tokens[i]`, groups expanded
/// (`crate::{a::{b, c}, d}` is three paths), and the index after it.
fn path_at(tokens: &[String], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = vec![tokens[i].clone()];
    i += 1;
    while i + 1 < tokens.len() && tokens[i] == "::" {
        if tokens[i + 1] == "{" {
            let (inner, next) = group(tokens, i + 2);
            let paths = inner.into_iter().map(|tail| prefix.iter().cloned().chain(tail).collect()).collect();
            return (paths, next);
        }
        if !is_ident(&tokens[i + 1]) && tokens[i + 1] != "*" {
            break;
        }
        prefix.push(tokens[i + 1].clone());
        i += 2;
    }
    (vec![prefix], i)
}

/// The paths of a `{ ... }` group whose first token is `tokens[i]`, and the index after its `}`.
fn group(tokens: &[String], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut out = Vec::new();
    while i < tokens.len() {
        match tokens[i].as_str() {
            "}" => return (out, i + 1),
            "," => i += 1,
            t if is_ident(t) || t == "*" => {
                let (paths, next) = path_at(tokens, i);
                out.extend(paths);
                i = next;
                // `as name` renames: skip them.
                if tokens.get(i).is_some_and(|t| t == "as") {
                    i += 2;
                }
            }
            _ => i += 1,
        }
    }
    (out, i)
}

fn is_ident(t: &str) -> bool {
    t.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Identifiers, `::`, braces and single punctuation characters.
fn tokens(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// `code` with comments removed and the insides of string and character literals blanked.
fn code_only(code: &str) -> String {
    let c: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '/' if c.get(i + 1) == Some(&'/') => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if c.get(i + 1) == Some(&'*') => {
                let mut nest = 0;
                while i < c.len() {
                    if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                        nest += 1;
                        i += 2;
                    } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                        nest -= 1;
                        i += 2;
                        if nest == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
            }
            'r' if matches!(c.get(i + 1), Some('"' | '#'))
                && (i == 0 || !(c[i - 1].is_alphanumeric() || c[i - 1] == '_')) =>
            {
                // Raw string: r"...", r#"..."#.
                let mut j = i + 1;
                let mut hashes = 0;
                while c.get(j) == Some(&'#') {
                    hashes += 1;
                    j += 1;
                }
                if c.get(j) != Some(&'"') {
                    out.push(c[i]);
                    i += 1;
                    continue;
                }
                j += 1;
                while j < c.len() && !(c[j] == '"' && (1..=hashes).all(|k| c.get(j + k) == Some(&'#'))) {
                    j += 1;
                }
                i = j + 1 + hashes;
                out.push_str("\"\"");
            }
            '"' => {
                i += 1;
                while i < c.len() && c[i] != '"' {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            '\'' => {
                // A character literal ('x', '\n', '\u{..}'), or a lifetime ('a).
                if c.get(i + 1) == Some(&'\\') {
                    let mut j = i + 2;
                    while j < c.len() && c[j] != '\'' {
                        j += 1;
                    }
                    i = j + 1;
                    out.push_str("' '");
                } else if c.get(i + 2) == Some(&'\'') {
                    i += 3;
                    out.push_str("' '");
                } else {
                    out.push('\'');
                    i += 1;
                }
            }
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

/// A cycle in `graph`, as the modules along it with the first repeated at the end.
fn find_cycle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        marks.insert(node.clone(), Mark::Open);
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let from = stack.iter().position(|m| m == next).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(next, graph, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New
            && let Some(c) = visit(node, graph, &mut marks, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

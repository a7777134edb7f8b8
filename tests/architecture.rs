//! The module graph (DESIGN.md §2, ARCHITECTURE.md): no `src/` module
//! imports one that imports it back, `config` is a leaf, and only
//! `src/store/` talks to a database.
//!
//! Reads `src/**/*.rs` as text and collects, per top-level module
//! (`src/x.rs` or `src/x/`), the top-level modules it names through
//! `crate::x` or `crate::{x, ...}` (comment lines left out; test code
//! counts: it is part of the module). `RELAY_ARCH_SRC` points the tests at
//! another `src/` (to see them fail on an older checkout).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src_dir() -> PathBuf {
    std::env::var_os("RELAY_ARCH_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read src dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The top-level module a file belongs to; `None` for the crate roots.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts = rel.components();
    let first = parts.next()?.as_os_str().to_str()?.to_owned();
    if parts.next().is_some() {
        return Some(first);
    }
    let name = first.strip_suffix(".rs")?;
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// The text of a file without its comment lines (`//`, `///`, `//!`), so
/// that doc links do not count as imports.
fn code_of(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The leading identifier of a path such as `b::c`.
fn first_name(item: &str) -> Option<String> {
    let name: String = item.trim().chars().take_while(|c| is_ident(*c)).collect();
    (!name.is_empty()).then_some(name)
}

/// Top-level module names `code` refers to through `crate::`.
fn references(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(is_ident) {
            continue; // e.g. `relay_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the first name of each item at
            // depth 0.
            let mut depth = 0usize;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.extend(first_name(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
            out.extend(first_name(&item));
        } else {
            let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// module → (module it names → the files that name it).
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn graph() -> Graph {
    let src = src_dir();
    let files = rust_files(&src);
    assert!(
        files.len() > 10,
        "found only {} files under {}",
        files.len(),
        src.display()
    );
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(&src, f)).collect();
    let mut g = Graph::new();
    for f in &files {
        let Some(from) = top_module(&src, f) else {
            continue;
        };
        let text = std::fs::read_to_string(f).expect("read a source file");
        let edges = g.entry(from.clone()).or_default();
        for to in references(&code_of(&text)) {
            if to != from && modules.contains(&to) {
                let shown = f.strip_prefix(&src).unwrap_or(f).display().to_string();
                edges.entry(to).or_default().insert(shown);
            }
        }
    }
    g
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct State<'g> {
        g: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let g = s.g;
        for w in g.get(v).into_iter().flat_map(|e| e.keys()) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let g = graph();
    let found = cycles(&g);
    let mut report = String::new();
    for c in &found {
        report += &format!("cycle: {}\n", c.join(" ↔ "));
        for from in c {
            for (to, files) in g.get(from).into_iter().flatten() {
                if c.contains(to) {
                    let files: Vec<&str> = files.iter().map(String::as_str).collect();
                    report += &format!("  {from} → {to} ({})\n", files.join(", "));
                }
            }
        }
    }
    assert!(found.is_empty(), "module import cycles in src/:\n{report}");
}

#[test]
fn config_is_a_leaf_that_imports_no_sibling() {
    let g = graph();
    let out = g.get("config").cloned().unwrap_or_default();
    assert!(
        out.is_empty(),
        "config imports {:?}; its checks that need other modules belong where those live",
        out
    );
}

#[test]
fn only_the_store_talks_to_a_database() {
    let src = src_dir();
    let mut offenders = Vec::new();
    for f in rust_files(&src) {
        if top_module(&src, &f).as_deref() == Some("store") {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&f).expect("read a source file"));
        for driver in [
            "rusqlite",
            "tokio_postgres",
            "deadpool_postgres",
            "postgres::",
        ] {
            if code.contains(driver) {
                offenders.push(format!("{} uses {driver}", f.display()));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

#[test]
fn references_are_read_from_paths_and_groups() {
    let code = "use crate::a::X;\nuse crate::{b, c::{D, E}, d::F};\nlet x = crate::e::f();\nrelay_crate::g;";
    let got: Vec<String> = references(code).into_iter().collect();
    assert_eq!(got, ["a", "b", "c", "d", "e"]);
}

//! The house rules (ARCHITECTURE.md, "Invariants"), checked on the workspace's source so that
//! a change that breaks one fails here, with the file and line, instead of in review:
//!
//! - no import circle between sibling modules of any crate;
//! - only `stopd-audit` runs SQL;
//! - only a `clock` module reads the wall clock;
//! - only the daemon's `cli/` prints;
//! - `stopd-rules` reads no clock and does no I/O;
//! - `stopd-audit` depends on neither `stopd-core`, the daemon, nor the AWS SDK;
//! - the audit crate reads rows by column name, never by position;
//! - no source file is over 800 lines.
//!
//! Test code (`tests/`, and a file's `#[cfg(test)] mod` at its end) may do what the rules
//! forbid production code (a test tampers with a database by SQL, builds times from the clock).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The crates of the workspace: (directory name, its `src/`).
fn crates() -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").exists())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                p.join("src"),
            )
        })
        .collect();
    out.sort();
    out
}

/// The files of `src` that are test code: declared `#[cfg(test)] mod name;` by their parent
/// (`name.rs` or `name/mod.rs` beside it, or under the parent's own directory).
fn test_only_files(src: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for file in rust_files(src) {
        let text = std::fs::read_to_string(&file).unwrap();
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        let dir = file.parent().unwrap();
        let children = if matches!(stem.as_str(), "mod" | "lib" | "main") {
            dir.to_path_buf()
        } else {
            dir.join(&stem)
        };
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if line.trim() != "#[cfg(test)]" {
                continue;
            }
            let Some(next) = lines.peek() else { break };
            let next = next.trim();
            let name = next
                .strip_prefix("pub(crate) mod ")
                .or(next.strip_prefix("pub mod "))
                .or(next.strip_prefix("mod "))
                .and_then(|n| n.strip_suffix(';'));
            if let Some(name) = name {
                out.insert(children.join(format!("{name}.rs")));
                out.insert(children.join(name).join("mod.rs"));
            }
        }
    }
    out
}

/// A file's production code: comments dropped (line by line, so a line number still names
/// the source line) and its inline test module (`#[cfg(test)] mod tests {`, at the end) cut
/// off. A test module in a file of its own (`#[cfg(test)] mod tests;`) is not read here at all:
/// [`test_only_files`] leaves such files out.
fn production(src: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut lines = src.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]")
            && lines.peek().is_some_and(|(_, next)| {
                next.trim_start().starts_with("mod ") && next.trim_end().ends_with('{')
            })
        {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push((n + 1, line.to_string()));
    }
    out
}

/// `file`'s module path inside its crate (`src/runtime/sweep/mod.rs` → `["runtime", "sweep"]`;
/// `lib.rs`, `main.rs` → `[]`).
fn module_path(src_dir: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src_dir).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

/// The module paths `code` (a file's production lines) names: `crate::a::b`, `super::c`, and
/// `use crate::{a, b::c}` groups, resolved against `here` (the file's module path) and cut to
/// the longest one in `known`.
fn references(code: &str, here: &[String], known: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    // A path's segments from `rest` (what follows `crate::` or `super::`), groups expanded.
    fn segments(rest: &str, ident: &dyn Fn(&str) -> String) -> Vec<Vec<String>> {
        let rest = rest.trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut items, mut item) = (0, Vec::new(), String::new());
            for c in group.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        item.push(c);
                    }
                    '}' if depth == 0 => break,
                    '}' => {
                        depth -= 1;
                        item.push(c);
                    }
                    ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                    _ => item.push(c),
                }
            }
            items.push(item);
            return items.iter().flat_map(|i| segments(i, ident)).collect();
        }
        let head = ident(rest);
        if head.is_empty() {
            return vec![Vec::new()];
        }
        let after = &rest[head.len()..];
        match after.strip_prefix("::") {
            Some(more) => segments(more, ident)
                .into_iter()
                .map(|mut tail| {
                    tail.insert(0, head.clone());
                    tail
                })
                .collect(),
            None => vec![vec![head]],
        }
    }
    let mut out = BTreeSet::new();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", here[..here.len().saturating_sub(1)].to_vec()),
    ] {
        for (at, _) in code.match_indices(prefix) {
            // `crate::` inside an identifier such as `stopd_crate::` is not ours.
            if code[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                continue;
            }
            for path in segments(&code[at + prefix.len()..], &ident) {
                let mut full = base.clone();
                full.extend(path);
                while !full.is_empty() && !known.contains(&full) {
                    full.pop();
                }
                if !full.is_empty() {
                    out.insert(full);
                }
            }
        }
    }
    out
}

/// A circle among `graph`'s nodes, as the chain of names, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut c = path[at..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for dep in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(dep, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|m| visit(m, graph, &mut Vec::new(), &mut done))
}

/// For each crate and each parent module: the import graph among its children (an edge from
/// `a::x` to `b::y` counts as `a -> b` where `a` and `b` are siblings under their common
/// parent; a module using its own parent or child is no circle).
fn sibling_graphs() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (name, src) in crates() {
        let tests = test_only_files(&src);
        let files: Vec<PathBuf> = rust_files(&src)
            .into_iter()
            .filter(|f| !tests.contains(f))
            .collect();
        let known: BTreeSet<Vec<String>> = files.iter().map(|f| module_path(&src, f)).collect();
        for file in &files {
            let here = module_path(&src, file);
            let code: String = production(&std::fs::read_to_string(file).unwrap())
                .into_iter()
                .map(|(_, l)| l)
                .collect::<Vec<_>>()
                .join("\n");
            for there in references(&code, &here, &known) {
                let common = here.iter().zip(&there).take_while(|(a, b)| a == b).count();
                if common == here.len() || common == there.len() {
                    continue;
                }
                let parent = format!("{name}::{}", here[..common].join("::"));
                out.entry(parent)
                    .or_default()
                    .entry(here[common].clone())
                    .or_default()
                    .insert(there[common].clone());
            }
        }
    }
    out
}

#[test]
fn the_import_reader_resolves_paths_groups_and_super() {
    let known: BTreeSet<Vec<String>> = [
        vec!["runtime".to_string()],
        vec!["runtime".into(), "sweep".into()],
        vec!["runtime".into(), "gates".into()],
        vec!["config".into()],
    ]
    .into();
    let here = vec!["runtime".to_string(), "sweep".into()];
    let code = "use crate::config::Config;\nuse super::gates::Gate;\n\
                use crate::{runtime::{gates, sweep::X}, clock::Clock};\nlet a = stopd_crate::x;";
    let got = references(code, &here, &known);
    let want: BTreeSet<Vec<String>> = [
        vec!["config".to_string()],
        vec!["runtime".into(), "gates".into()],
        vec!["runtime".into(), "sweep".into()],
    ]
    .into();
    assert_eq!(got, want);
}

#[test]
fn the_circle_finder_finds_a_circle_and_only_one() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(circle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(circle(&g).unwrap(), ["a", "b", "c", "a"]);
}

#[test]
fn no_module_imports_its_siblings_in_a_circle() {
    let graphs = sibling_graphs();
    assert!(
        graphs.keys().any(|k| k.starts_with("daemon::")),
        "the daemon's modules were read: {:?}",
        graphs.keys().collect::<Vec<_>>()
    );
    let circles: Vec<String> = graphs
        .iter()
        .filter_map(|(parent, g)| circle(g).map(|c| format!("in {parent}: {}", c.join(" -> "))))
        .collect();
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

/// Lines of production code, in the crates matching `crate_filter` and files matching
/// `file_filter`, that contain one of `needles`: `path:line: text`.
fn offending(
    crate_filter: impl Fn(&str) -> bool,
    file_filter: impl Fn(&Path) -> bool,
    needles: &[&str],
) -> Vec<String> {
    offending_lines(crate_filter, file_filter, |line| {
        needles.iter().any(|needle| line.contains(needle))
    })
}

/// Lines of production code, in the crates matching `crate_filter` and files matching
/// `file_filter`, that `bad` finds wrong: `path:line: text`.
fn offending_lines(
    crate_filter: impl Fn(&str) -> bool,
    file_filter: impl Fn(&Path) -> bool,
    bad: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, src) in crates() {
        if !crate_filter(&name) {
            continue;
        }
        let tests = test_only_files(&src);
        for file in rust_files(&src) {
            if !file_filter(&file) || tests.contains(&file) {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in production(&text) {
                if bad(&line) {
                    let rel = file
                        .strip_prefix(root())
                        .unwrap_or(&file)
                        .display()
                        .to_string();
                    out.push(format!("{rel}:{n}: {}", line.trim()));
                }
            }
        }
    }
    out
}

#[test]
fn only_the_audit_crate_runs_sql() {
    let found = offending(|c| c != "audit", |_| true, &["sqlx::", "use sqlx"]);
    assert!(
        found.is_empty(),
        "SQL outside crates/audit:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_a_clock_module_reads_the_wall_clock() {
    let found = offending(
        |_| true,
        |f| f.file_name().is_none_or(|n| n != "clock.rs"),
        &["Utc::now()", "SystemTime::now()", "Local::now()"],
    );
    assert!(
        found.is_empty(),
        "wall-clock reads outside clock.rs:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_cli_prints() {
    let found = offending(
        |c| c == "daemon",
        |f| !f.components().any(|c| c.as_os_str() == "cli"),
        &["println!", "eprintln!", "print!(", "eprint!("],
    );
    assert!(
        found.is_empty(),
        "printing outside the daemon's cli/:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_rules_crate_reads_no_clock_and_does_no_io() {
    let found = offending(
        |c| c == "rules",
        |_| true,
        &[
            "::now()",
            "std::fs",
            "std::net",
            "tokio",
            "std::env",
            "std::io::stdin",
        ],
    );
    assert!(
        found.is_empty(),
        "clock or I/O in crates/rules:\n{}",
        found.join("\n")
    );
}

/// Whether `line` reads a column by position: `get(3)`, `try_get(0)`, `get::<String, _>(1)`.
fn positional_read(line: &str) -> bool {
    line.match_indices("get").any(|(at, _)| {
        let mut rest = &line[at + 3..];
        if let Some(turbofish) = rest.strip_prefix("::<") {
            let Some(end) = turbofish.find(">(") else {
                return false;
            };
            rest = &turbofish[end + 1..];
        }
        rest.strip_prefix('(')
            .and_then(|r| r.split_once(')'))
            .is_some_and(|(arg, _)| {
                !arg.is_empty() && arg.trim().chars().all(|c| c.is_ascii_digit())
            })
    })
}

#[test]
fn the_positional_read_finder_finds_each_spelling() {
    for read in [
        "r.get(0)",
        "row.try_get(12)?",
        "r.get::<String, _>(1)",
        "r.try_get::<i64, _>(0)",
    ] {
        assert!(positional_read(read), "{read}");
    }
    for not in [
        "r.get(\"name\")",
        "v.get(i)",
        "r.get::<String, _>(\"at\")",
        "target()",
    ] {
        assert!(!positional_read(not), "{not}");
    }
}

#[test]
fn the_audit_crate_reads_rows_by_name() {
    let found = offending_lines(|c| c == "audit", |_| true, positional_read);
    assert!(
        found.is_empty(),
        "positional row reads:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_audit_crate_depends_on_no_aws_crate_and_not_on_the_daemon() {
    let manifest = std::fs::read_to_string(root().join("crates/audit/Cargo.toml")).unwrap();
    for forbidden in [
        "stopd-core",
        "stopd-emulator",
        "aws-",
        "\nstopd ",
        "\nstopd.",
    ] {
        assert!(
            !manifest.contains(forbidden),
            "crates/audit/Cargo.toml names {forbidden:?}"
        );
    }
}

#[test]
fn no_source_file_is_over_800_lines() {
    let mut long = Vec::new();
    for (_, src) in crates() {
        let dir = src.parent().unwrap();
        for sub in ["src", "tests", "benches"] {
            for file in rust_files(&dir.join(sub)) {
                let n = std::fs::read_to_string(&file).unwrap().lines().count();
                if n > 800 {
                    long.push(format!(
                        "{}: {n} lines",
                        file.strip_prefix(root()).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "files over 800 lines:\n{}",
        long.join("\n")
    );
}

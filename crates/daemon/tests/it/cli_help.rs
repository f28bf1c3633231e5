//! The command line's own documentation: `--help` (snapshots, 100 columns), the README's command
//! table against it, shell completions and man pages.

use std::process::Command;

use crate::cli::{max_width, snapshot};
use crate::common::*;

#[tokio::test]
async fn help_snapshot_and_it_fits_100_columns() {
    // As a user without STOPD_CONFIG sees it (clap shows the variable's value).
    let help = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env_remove("STOPD_CONFIG")
            .output()
            .unwrap();
        assert_ok(&out);
        text(&out.stdout)
    };
    let top = help(&["--help"]);
    assert!(max_width(&top) <= 100, "{top}");
    snapshot("help.txt", &top);
    snapshot("exempt-add-help.txt", &help(&["exempt", "add", "--help"]));
}

#[tokio::test]
async fn readme_command_table_matches_help() {
    let env = Env::new(&fleet(&[])).await;
    let help = text(&env.stopd(&["--help"]).await.stdout);
    let commands: Vec<&str> = help
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with("  "))
        // A description that wraps goes on deeper indented.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 10, "{commands:?}");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let table = readme
        .split("## Commands")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .find(|p| p.starts_with("| command"))
        .expect("README's command table");
    // Each row's first cell names one or more commands: `exempt add ...`, `completions SHELL`.
    // `\|` is a bar inside a cell.
    let table = table.replace("\\|", "/");
    let mut in_readme: Vec<&str> = Vec::new();
    for row in table.lines().skip(2) {
        let cell = row.split('|').nth(1).unwrap();
        for part in cell.split('`').skip(1).step_by(2) {
            in_readme.push(part.split_whitespace().next().unwrap());
        }
    }
    in_readme.dedup();
    assert_eq!(in_readme, commands, "README's command table against --help");
    // And every flag the README shows for a command exists in that command's --help.
    for row in table.lines().skip(2) {
        let cell = row.split('|').nth(1).unwrap();
        for part in cell.split('`').skip(1).step_by(2) {
            let mut words = part.split_whitespace();
            let mut args: Vec<&str> = vec![words.next().unwrap()];
            if args[0] == "exempt" || args[0] == "freeze" {
                args.push(words.next().unwrap());
            }
            let sub_help = text(&env.stopd(&[&args[..], &["--help"]].concat()).await.stdout);
            for flag in part
                .split(|c: char| c.is_whitespace() || "[]()|\\".contains(c))
                .filter(|w| w.starts_with("--"))
            {
                assert!(
                    sub_help.contains(flag),
                    "README shows {flag} for {args:?}, --help does not"
                );
            }
        }
    }
}

#[tokio::test]
async fn completions_and_man_come_from_the_cli_definition() {
    let env = Env::new(&fleet(&[])).await;
    for (shell, words) in [
        ("bash", "complete -F _stopd"),
        ("zsh", "#compdef stopd"),
        ("fish", "complete -c stopd"),
    ] {
        let out = env.stopd(&["completions", shell]).await;
        assert_ok(&out);
        let s = text(&out.stdout);
        assert!(s.contains(words), "{shell}: {s}");
        assert!(s.contains("exempt") && s.contains("wide"), "{shell}");
    }
    let out = env.stopd(&["man"]).await;
    assert_ok(&out);
    let man = text(&out.stdout);
    assert!(
        man.starts_with(".ie") || man.contains(".TH stopd 1"),
        "{man}"
    );
    assert!(man.contains("completions"));
    let out = env.stopd(&["completions", "tcsh"]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn demo_refuses_a_config_it_would_not_read() {
    let out = Command::new(BIN)
        .args(["--config", "/etc/elsewhere.toml", "demo"])
        .env_remove("STOPD_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("does not read --config /etc/elsewhere.toml"),
        "{err}"
    );
}

/// The tables and keys of the example policy (commented-out ones too): `[aws]` ->
/// `["region", ...]`, in file order. A key is a line `key = ...` or `# key = ...` at column 0.
fn example_config_keys() -> Vec<(String, Vec<String>)> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/stopd.example.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        let line = line.strip_prefix("# ").unwrap_or(line);
        let head = line.split('#').next().unwrap().trim_end();
        if head.starts_with('[') && head.ends_with(']') && !head.contains(' ') {
            tables.push((head.to_string(), Vec::new()));
            continue;
        }
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            let (_, keys) = tables.last_mut().expect("a key before any table");
            keys.push(key.to_string());
        }
    }
    tables
}

/// `stopd man --dir` writes a page for every command the pages refer to, and stopd.toml(5)
/// lists every table and key of the example policy, each key in its table's section; plain
/// `stopd man` still prints stopd(1), its examples unfilled (roff used to re-wrap them
/// mid-command).
#[tokio::test]
async fn man_dir_writes_every_page_referred_to_and_the_policy_page_lists_every_key() {
    let env = Env::new(&fleet(&[])).await;
    let dir = env.dir.path().join("man");
    let out = env.stopd(&["man", "--dir", path_str(&dir)]).await;
    assert_ok(&out);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    for want in [
        "stopd.1",
        "stopd-report.1",
        "stopd-exempt.1",
        "stopd-exempt-add.1",
        "stopd-freeze-lift.1",
        "stopd-man.1",
        "stopd.toml.5",
    ] {
        assert!(files.contains(&want.to_string()), "{want} not in {files:?}");
    }
    assert!(!files.iter().any(|f| f.contains("help")), "{files:?}");
    // Every page another page refers to (`stopd-report(1)`, `.BR stopd\-report (1)`) exists.
    for f in &files {
        let page = std::fs::read_to_string(dir.join(f))
            .unwrap()
            .replace("\\-", "-");
        for (i, _) in page.match_indices("stopd") {
            let rest = &page[i..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                .collect();
            let after = rest[name.len()..].trim_start_matches(' ');
            if let Some(section) = after
                .strip_prefix('(')
                .and_then(|s| s.chars().next())
                .filter(|c| c.is_ascii_digit())
            {
                let file = format!("{name}.{section}");
                assert!(files.contains(&file), "{f} refers to {file}, not written");
            }
        }
    }
    let policy = std::fs::read_to_string(dir.join("stopd.toml.5")).unwrap();
    let tables = example_config_keys();
    assert!(tables.len() >= 10, "{tables:?}");
    let mut missing = Vec::new();
    for (table, keys) in &tables {
        let heading = format!(".SS {table}\n");
        let Some(start) = policy.find(&heading) else {
            missing.push(table.clone());
            continue;
        };
        let body = &policy[start + heading.len()..];
        let section = &body[..body.find("\n.S").unwrap_or(body.len())];
        for key in keys {
            if !section.contains(&format!("\\fB{key}\\fR")) {
                missing.push(format!("{table} {key}"));
            }
        }
    }
    assert!(missing.is_empty(), "stopd.toml.5 lacks {missing:?}");
    // Plain `stopd man` is stopd(1), the same page; its examples are not re-filled.
    let out = env.stopd(&["man"]).await;
    assert_ok(&out);
    let main = text(&out.stdout);
    assert_eq!(main, std::fs::read_to_string(dir.join("stopd.1")).unwrap());
    let examples = main
        .split(".SH EXAMPLES\n")
        .nth(1)
        .expect("an EXAMPLES section");
    assert!(examples.starts_with(".nf\n"), "{examples}");
    let block = &examples[..examples.find("\n.fi").expect("the no-fill block ends")];
    assert!(
        block.contains(
            "\n  stopd exempt add \\-\\-pipeline 'prod\\-hotfix\\-*' \\-\\-for 2h \\-\\-reason \"INC\\-4711\"\n"
        ),
        "{block}"
    );
}

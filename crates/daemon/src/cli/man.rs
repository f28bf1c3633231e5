//! Man pages: stopd(1), one `stopd-<command>(1)` per command and subcommand (stopd-exempt-add(1)),
//! and stopd.toml(5) for the policy file (hand-written: config/stopd.toml.5, beside the example
//! config it documents).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Command};

use crate::cli::common::print;

pub(super) const MAN_EXAMPLES: &str = "\
Examples:
  # Read stopd(1) now
  stopd man | man -l -
  # Install every page: stopd.1, stopd-<command>.1 for each command, stopd.toml.5
  stopd man --dir /tmp/stopd-man && sudo cp /tmp/stopd-man/*.1 /usr/local/share/man/man1/ \\
    && sudo cp /tmp/stopd-man/*.5 /usr/local/share/man/man5/";

#[derive(Debug, Args)]
pub(super) struct ManArgs {
    /// Write every page into this directory (created if missing) instead of printing stopd(1).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// `stopd man [--dir DIR]`: the pages of `cli` (the whole command line).
pub(super) fn run(args: &ManArgs, cli: Command) -> Result<ExitCode> {
    match &args.dir {
        None => print(&main_page(cli)?),
        Some(dir) => {
            let written = write_all(cli, dir)?;
            print(
                format!(
                    "wrote {} pages to {}: {}\n",
                    written.len(),
                    dir.display(),
                    written.join(" ")
                )
                .as_bytes(),
            )
        }
    }
}

/// stopd.toml(5), roff.
const POLICY_PAGE: &str = include_str!("../../../../config/stopd.toml.5");

/// The command tree as the pages show it: clap's `help` subcommands are no page of their own.
fn without_help(cmd: Command) -> Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    let mut cmd = cmd.disable_help_subcommand(true);
    for name in names {
        cmd = cmd.mut_subcommand(name, without_help);
    }
    cmd
}

/// Every page: (file name, roff). stopd.1 first.
pub fn pages(cli: Command) -> Result<Vec<(String, Vec<u8>)>> {
    let mut cli = without_help(cli);
    cli.build();
    let mut names = Vec::new();
    collect_names(&cli, &mut names);
    let mut out = Vec::new();
    collect(&cli, &names, &mut out)?;
    out.push(("stopd.toml.5".to_string(), POLICY_PAGE.as_bytes().to_vec()));
    Ok(out)
}

/// stopd(1) alone.
pub fn main_page(cli: Command) -> Result<Vec<u8>> {
    Ok(pages(cli)?.swap_remove(0).1)
}

/// `stopd man --dir DIR`: writes every page; says what it wrote.
pub fn write_all(cli: Command, dir: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for (name, roff) in pages(cli)? {
        let path = dir.join(&name);
        std::fs::write(&path, roff).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(name);
    }
    Ok(written)
}

fn page_name(cmd: &Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string()
}

fn collect_names(cmd: &Command, names: &mut Vec<String>) {
    names.push(page_name(cmd));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect_names(sub, names);
    }
}

fn collect(cmd: &Command, all: &[String], out: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
    out.push((format!("{}.1", page_name(cmd)), render(cmd, all)?));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, all, out)?;
    }
    Ok(())
}

/// Text for a roff line: backslashes and hyphens escaped, a leading `.` or `'` made literal.
fn roff_line(line: &str) -> String {
    let s = line.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// One command's page: clap_mangen's sections, then the help's examples and notes as written
/// (no-fill: an example is never re-wrapped mid-command), then SEE ALSO.
fn render(cmd: &Command, all: &[String]) -> Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone())
        .source(concat!("stopd ", env!("CARGO_PKG_VERSION")))
        .manual("stopd");
    let mut w = Vec::new();
    man.render_title(&mut w)?;
    man.render_name_section(&mut w)?;
    man.render_synopsis_section(&mut w)?;
    man.render_description_section(&mut w)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut w)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut w)?;
    }
    if let Some(text) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) {
        let text = text.to_string();
        let body = text.strip_prefix("Examples:\n").unwrap_or(&text);
        writeln!(w, ".SH EXAMPLES\n.nf")?;
        for line in body.lines() {
            writeln!(w, "{}", roff_line(line))?;
        }
        writeln!(w, ".fi")?;
    }
    if cmd.get_version().is_some() {
        man.render_version_section(&mut w)?;
    }
    let me = page_name(cmd);
    let mut see: Vec<String> = Vec::new();
    if me == "stopd" {
        see.extend(
            all.iter()
                .filter(|n| *n != "stopd")
                .map(|n| format!("{n}(1)")),
        );
    } else {
        see.push("stopd(1)".into());
        // Its parent and its own subcommands.
        if let Some((parent, _)) = me.rsplit_once('-')
            && parent != "stopd"
        {
            see.push(format!("{parent}(1)"));
        }
        see.extend(
            all.iter()
                .filter(|n| {
                    n.strip_prefix(&format!("{me}-"))
                        .is_some_and(|r| !r.contains('-'))
                })
                .map(|n| format!("{n}(1)")),
        );
    }
    see.push("stopd.toml(5)".into());
    writeln!(w, ".SH \"SEE ALSO\"")?;
    for (i, r) in see.iter().enumerate() {
        let (name, section) = r.split_once('(').expect("name(section)");
        let sep = if i + 1 < see.len() { "," } else { "" };
        // The name bold, the section (and comma) roman.
        writeln!(w, ".BR {} ({section}{sep}", roff_line(name))?;
    }
    Ok(w)
}

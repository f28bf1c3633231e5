//! `stopd completions SHELL`: a shell completion script, from the command line's definition.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::cli::common::print;

pub(super) const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  stopd completions bash | sudo tee /usr/share/bash-completion/completions/stopd
  stopd completions zsh > \"${fpath[1]}/_stopd\"
  stopd completions fish > ~/.config/fish/completions/stopd.fish";

#[derive(Debug, Args)]
pub(super) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// `stopd completions SHELL`: the script for `cli` (the whole command line) on stdout.
pub(super) fn run(args: &CompletionsArgs, mut cli: clap::Command) -> Result<ExitCode> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cli, "stopd", &mut out);
    print(&out)
}

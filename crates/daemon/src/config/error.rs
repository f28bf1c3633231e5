//! What is wrong with a policy file, and where: [`Problem`]s with their line and column, and the
//! [`ConfigError`] that prints them one a line.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, if known.
    pub line: Option<usize>,
    /// 1-based column, if known.
    pub column: Option<usize>,
    /// Path inside the file, e.g. `freeze[1].cron`.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Why a configuration could not be loaded. Display prints one line per problem:
/// `path:line:column: field: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

impl std::error::Error for ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.path.display())?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
                if let Some(col) = p.column {
                    write!(f, ":{col}")?;
                }
            }
            write!(f, ": ")?;
            if let Some(field) = &p.field {
                write!(f, "{field}: ")?;
            }
            write!(f, "{}", p.message)?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// This error, first saying what cannot be done without a valid policy (exit 78).
    pub fn refusing(&self, what: &str) -> ConfigError {
        let mut problems = vec![Problem {
            line: None,
            column: None,
            field: None,
            message: format!("{what}, and the policy file does not validate:"),
        }];
        problems.extend(self.problems.iter().cloned());
        ConfigError {
            path: self.path.clone(),
            problems,
        }
    }

    pub(super) fn single(path: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.to_path_buf(),
            problems: vec![Problem {
                line: None,
                column: None,
                field: None,
                message: message.into(),
            }],
        }
    }
}

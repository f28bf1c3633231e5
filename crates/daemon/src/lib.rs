//! `stopd`: stops AWS CodePipeline executions that break a freeze window or a timeout, and keeps
//! an audit log of every stop. See `README.md` for operators and `ARCHITECTURE.md` for
//! maintainers.
//!
//! The imports run one way: [`cli`] → [`runtime`] → {[`config`], `stopd_audit`} →
//! `stopd_rules`; [`runtime`] → `stopd_core`.

pub mod cli;
pub mod clock;
pub mod config;
pub mod runtime;

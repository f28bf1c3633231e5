//! The `stopd` binary, run as users run it, against an in-process `stopd-emulator` over real
//! HTTP, with real SQLite files; and (`clocked`) the daemon's library in-process on a manual
//! clock. One test binary for the crate (link time on 2 cores).

mod accounts;
mod adhoc_cli;
mod allow;
mod audit;
mod change_calendar;
mod change_calendar_accounts;
mod cli;
mod cli_consistency;
mod cli_help;
mod clocked;
mod common;
mod config_cli;
mod copy;
mod cost;
mod credentials;
mod daemon;
mod disk_full;
mod events;
mod gates;
mod ha;
mod ha_audit;
mod house;
mod iam;
mod ics;
mod metrics;
mod notify;
mod status;
mod stops;

//! The `stopd` binary, run as users run it, against an in-process `stopd-emulator` over real
//! HTTP, with real SQLite files. One test binary for the crate (link time on 2 cores).

mod accounts;
mod audit;
mod cli;
mod common;
mod config_cli;
mod credentials;
mod daemon;
mod gates;
mod iam;
mod notify;
mod status;
mod stops;

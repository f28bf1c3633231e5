//! Integration tests of `stopd-rules`: one binary, modules by concern.

mod allow;
mod common;
mod decisions;
mod dst;
mod end_cron;
mod extremes;
mod ics;
mod properties;
mod validation;

//! Integration tests of `stopd-emulator`: one binary, modules by concern.

mod accounts;
mod calendars;
mod common;
mod fixture_file;
mod identity;
mod lifecycle;
mod listing;
mod modes;
mod protocol;
mod sdk;
mod sqs;

//! Integration tests of `stopd-emulator`: one binary, modules by concern.

mod common;
mod fixture_file;
mod lifecycle;
mod protocol;
mod sdk;

//! Integration tests of `stopd-emulator`: one binary, modules by concern.

mod common;
mod lifecycle;
mod protocol;
mod sdk;

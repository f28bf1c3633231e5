//! Integration tests of `stopd-core`: the real SDK over HTTP against `stopd-emulator`.

mod common;
mod discovery;
mod stops;

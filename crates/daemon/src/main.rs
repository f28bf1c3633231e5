//! `stopd`: stops AWS CodePipeline executions that break a freeze window or a timeout, and keeps
//! an audit log of every stop. The binary is the library's [`stopd::cli::main`]; see
//! `README.md` for operators and `ARCHITECTURE.md` for maintainers.

fn main() -> std::process::ExitCode {
    stopd::cli::main()
}

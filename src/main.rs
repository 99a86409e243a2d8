//! The `scir` binary: a thin edge over [`scir::cli`]. Everything else lives in
//! the library so that tests can call it.

use std::process::ExitCode;

fn main() -> ExitCode {
    scir::model::threads::configure_process();
    scir::cli::main()
}

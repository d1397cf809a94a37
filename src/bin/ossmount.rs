//! The `ossmount` binary; everything lives in [`ossmount::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    ossmount::cli::main_with_args(std::env::args_os().collect())
}

//! The `ossmount` command: argument definitions ([`args`]), what each command does
//! ([`run`]), and the pieces the mount flow is made of.

pub mod args;
pub mod bucket_check;
pub mod connect;
pub mod diagnose;
pub mod error;
pub mod fuse_mount;
pub mod helper;
pub mod run;
pub mod serve;
pub mod status;
pub mod sync;
pub mod write_back;

pub use error::CliError;
pub use run::main_with_args;

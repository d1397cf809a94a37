//! The `ossmount` command line: argument definitions ([`args`]) and what each command does.

pub mod args;
pub mod bucket_check;
pub mod diagnose;
pub mod helper;

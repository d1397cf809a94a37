//! The `ossmount` command line: argument definitions ([`args`]) and what each command does.

pub mod args;

//! Mountpoint checks

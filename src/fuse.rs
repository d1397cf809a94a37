//! TODO(owner): fuse

//! TODO(owner): write

//! TODO(owner): fs

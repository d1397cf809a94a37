//! TODO(owner): config

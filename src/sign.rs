//! TODO(owner): sign

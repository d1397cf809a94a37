//! TODO(owner): client

//! TODO(owner): read

//! TODO(owner): cli

//! TODO(owner): endpoint

//! TODO(fs owner): fault-injecting wrapper.

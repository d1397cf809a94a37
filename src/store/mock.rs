//! TODO(fs owner): in-memory mock store counting requests per operation.

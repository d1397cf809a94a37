//! TODO(owner): crc64

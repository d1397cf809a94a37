//! TODO(owner): emulator

//! Server-side verification of signed requests (used by the emulator).

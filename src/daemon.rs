//! Background mode (TODO)

//! lockbox-client

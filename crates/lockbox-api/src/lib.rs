//! lockbox-api

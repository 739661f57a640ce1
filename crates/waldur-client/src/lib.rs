//! waldur-client

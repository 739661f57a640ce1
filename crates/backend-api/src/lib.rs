//! backend-api

//! waldur-sim

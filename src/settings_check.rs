//! What a settings section's own checks report: one problem per bad key.
//!
//! A primitive below every feature: each feature's settings type (`src/<feature>/settings.rs`)
//! returns its problems as [`ConfigProblem`]s, and [`crate::config`] collects them into one
//! error. This module imports nothing from the crate, so a feature's settings can use it without
//! depending on configuration loading (which imports every feature's settings).

/// Every problem found while loading, each naming its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

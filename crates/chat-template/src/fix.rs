//! Repairing templates.

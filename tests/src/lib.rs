//! Shared helpers for labagent end-to-end tests.

//! Integration tests for labagent-store (one binary: the crash test re-executes it).

mod basic;
mod common;
mod damage;
mod fault;
mod model;

//! pgmig as a library for automation: [`runbook::Migration`] holds the three
//! connections and runs the runbook's steps one call at a time, with the
//! same checks and persisted state as the `pgmig` binary (which is a thin
//! layer of argument parsing and printing over the same crates).

pub mod runbook;

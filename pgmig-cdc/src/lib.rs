//! The native change-data-capture applier: reads each slot's changes after the
//! pause LSN P, applies every transaction that commits after P to the target
//! exactly once, reports lag, syncs sequences and checks the cutover.
//!
//! Filled by the phase II issue.

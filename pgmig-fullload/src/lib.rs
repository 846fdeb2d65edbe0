//! The full load: schema sections (pre-data and post-data through the
//! target-version `pg_dump`), chunk planning (integer-key ranges on any
//! version, ctid ranges on 14+), the in-process COPY streaming engine from the
//! paused replica into the target, deferred index and constraint builds, load
//! state in the target's `pgmig` schema, and data verification (counts,
//! checksums, time buckets).
//!
//! Today it holds the schema transfer ([`schema`]); the load and the
//! verification arrive with their issues.

pub mod schema;

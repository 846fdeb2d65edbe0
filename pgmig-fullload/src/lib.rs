//! The full load: schema sections (pre-data and post-data through the
//! target-version `pg_dump`), chunk planning (integer-key ranges on any
//! version, ctid ranges on 14+), the in-process COPY streaming engine from the
//! paused replica into the target, deferred index and constraint builds, load
//! state in the target's `pgmig` schema, and data verification (counts,
//! checksums, time buckets).

pub mod load;
pub mod schema;
pub mod verify;

//! pglogical on the source: preflight of source settings, the extension, the
//! provider node, replication sets (insert/truncate set `i<slot>` and
//! update/delete set `<slot>`), logical slots with plugin `pglogical`, decoding
//! of the pglogical JSON protocol into typed messages, and verification of the
//! pause point P against every slot.
//!
//! Filled by the pglogical issue; this crate knows nothing of COPY or DMS.

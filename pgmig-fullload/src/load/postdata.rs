//! Deferred post-data: per-table index work from the replica's catalog, and
//! the rest of the stored post-data script.

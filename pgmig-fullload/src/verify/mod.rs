//! Verification: proof that the target holds the same data as the replica at
//! P (after the load) or as the source (at cutover).

//! End-to-end scenarios across the pgmig crates and the `pgmig` binary,
//! against real PostgreSQL servers started by `pgmig-testkit`. The scenarios
//! live in `tests/tests/`; this library is empty.

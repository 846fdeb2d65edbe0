//! AWS DMS artifacts for each slot: source endpoint settings, table mappings,
//! CDC task settings and the `CreateReplicationTask` input that starts at the
//! pause LSN P, plus an optional driver over the AWS SDK.
//!
//! Filled by the phase II issue.

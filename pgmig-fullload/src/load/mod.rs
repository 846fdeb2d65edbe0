//! The full load from the paused replica into the target.

mod options;
pub mod postdata;

pub use options::{ByteSize, CopyFormat, FormatChoice};

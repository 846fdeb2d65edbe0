//! `pgmig lsn compare`.

use std::cmp::Ordering;

use pgmig_core::Lsn;
use serde::Serialize;

#[derive(Serialize)]
struct LsnComparison {
    a: Lsn,
    b: Lsn,
    order: &'static str,
    distance_bytes: u64,
}

/// Prints `<`, `=` or `>` and the distance in bytes (or one JSON document).
pub fn compare(a: Lsn, b: Lsn, json: bool) -> anyhow::Result<()> {
    let (order, distance) = match a.cmp(&b) {
        Ordering::Less => ("<", b.0 - a.0),
        Ordering::Equal => ("=", 0),
        Ordering::Greater => (">", a.0 - b.0),
    };
    if json {
        let doc = LsnComparison {
            a,
            b,
            order,
            distance_bytes: distance,
        };
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("{order} {distance}");
    }
    Ok(())
}

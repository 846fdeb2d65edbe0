//! Random keys compared row by row: cheap spot checks of big tables.

use pgmig_core::ident::quote_literal;
use pgmig_core::{QualifiedTable, quote_ident};
use tokio_postgres::Client;

use super::VerifyError;

/// Keys per statement when fetching the sampled rows.
const KEYS_PER_STATEMENT: usize = 1000;

/// Draws up to `n` random keys of `table` on the left, each as the text of
/// its key columns.
///
/// Reads about three times `n` rows' worth of random pages
/// (`TABLESAMPLE SYSTEM`) and shuffles them; when that gives fewer than `n`
/// keys (a small table, a stale estimate) it draws from the whole table.
pub(crate) async fn random_keys(
    client: &Client,
    side: &str,
    table: &QualifiedTable,
    key: &[String],
    estimated_rows: Option<i64>,
    n: usize,
) -> Result<Vec<Vec<String>>, VerifyError> {
    let cols = key
        .iter()
        .map(|k| format!("{}::text", quote_ident(k)))
        .collect::<Vec<_>>()
        .join(", ");
    let what = || format!("draw random keys of {table}");
    let rows = estimated_rows.unwrap_or(0).max(1) as f64;
    let percent = (300.0 * n as f64 / rows).min(100.0);
    let sampled = if percent < 100.0 {
        client
            .query(
                &format!(
                    "SELECT {cols} FROM ONLY {} TABLESAMPLE SYSTEM ({percent}) ORDER BY random() LIMIT {n}",
                    table.quoted()
                ),
                &[],
            )
            .await
            .map_err(VerifyError::query(side, what()))?
    } else {
        Vec::new()
    };
    let rows = if sampled.len() >= n {
        sampled
    } else {
        client
            .query(
                &format!(
                    "SELECT {cols} FROM ONLY {} ORDER BY random() LIMIT {n}",
                    table.quoted()
                ),
                &[],
            )
            .await
            .map_err(VerifyError::query(side, what()))?
    };
    Ok(rows
        .iter()
        .map(|r| (0..key.len()).map(|i| r.get::<_, String>(i)).collect())
        .collect())
}

/// `WHERE` conditions selecting `keys`, at most [`KEYS_PER_STATEMENT`] keys
/// each: `k IN ('1', '2')`, or `(a, b) IN (('1', 'x'), …)`.
pub(crate) fn key_conditions(key: &[String], keys: &[Vec<String>]) -> Vec<String> {
    let columns = key.iter().map(|k| quote_ident(k)).collect::<Vec<_>>();
    keys.chunks(KEYS_PER_STATEMENT)
        .map(|batch| {
            let values = batch
                .iter()
                .map(|k| {
                    let lits = k.iter().map(|v| quote_literal(v)).collect::<Vec<_>>();
                    if lits.len() == 1 {
                        lits[0].clone()
                    } else {
                        format!("({})", lits.join(", "))
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            if columns.len() == 1 {
                format!("{} IN ({values})", columns[0])
            } else {
                format!("({}) IN ({values})", columns.join(", "))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_quote_values_and_batch() {
        let one = key_conditions(&["id".into()], &[vec!["1".into()], vec!["it's".into()]]);
        assert_eq!(one, vec!["\"id\" IN ('1', 'it''s')"]);
        let two = key_conditions(&["a".into(), "b".into()], &[vec!["1".into(), "x".into()]]);
        assert_eq!(two, vec!["(\"a\", \"b\") IN (('1', 'x'))"]);
        let many: Vec<Vec<String>> = (0..2500).map(|i| vec![i.to_string()]).collect();
        assert_eq!(key_conditions(&["id".into()], &many).len(), 3);
    }
}

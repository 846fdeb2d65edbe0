//! `pgmig plan`: build the slot plan from the source's catalog, or validate
//! the configured one against it; print it; optionally write the config file.

use std::path::Path;

use pgmig_core::catalog::list_tables;
use pgmig_core::plan::{Plan, write_rates};
use pgmig_core::{ServerRole, ServerVersion};
use serde::Serialize;

use super::common::{connect, print_json};
use crate::cli::{GlobalArgs, PlanArgs};
use crate::exit::{Outcome, UsageError};
use crate::settings::{DEFAULT_CONFIG, Settings};

#[derive(Serialize)]
struct Report<'a> {
    /// `validated` (the config file's plan) or `built`.
    origin: &'static str,
    written: Option<&'a Path>,
    plan: &'a Plan,
}

/// Runs `pgmig plan`.
pub async fn run(global: &GlobalArgs, args: &PlanArgs) -> anyhow::Result<Outcome> {
    let settings = Settings::load(global)?;
    let source = connect(&settings, ServerRole::Source).await?;
    let version = ServerVersion::query(&source).await?;
    let tables = list_tables(&source, version).await?;
    let rates = write_rates(&source).await?;

    let (plan, origin) = match &settings.plan {
        Some(given) => {
            let file = settings
                .config_file
                .as_deref()
                .unwrap_or(Path::new(DEFAULT_CONFIG))
                .display()
                .to_string();
            // The plan's own filters, plus the file's [filters] and the flags.
            let mut given = given.clone();
            given.filters = settings.filters(Some(&given), &args.include, &args.exclude);
            given
                .validate_against(&tables)
                .map_err(|e| UsageError(format!("invalid plan in {file}: {e}")))?;
            (given.refreshed(&tables, &rates), "validated")
        }
        None => {
            let filters = settings.filters(None, &args.include, &args.exclude);
            let plan = Plan::build(&tables, &rates, args.slots, &filters)
                .map_err(|e| UsageError(format!("cannot plan: {e}")))?;
            (plan, "built")
        }
    };
    if let Some(path) = &args.write {
        settings.write_config(path, &plan)?;
    }
    if global.json {
        print_json(&Report {
            origin,
            written: args.write.as_deref(),
            plan: &plan,
        })?;
    } else {
        print!("{}", render(&plan, origin));
        if let Some(path) = &args.write {
            println!("written to {} (no passwords)", path.display());
        }
    }
    Ok(Outcome::Success)
}

/// Bytes in binary units, one decimal: `1.5 GiB`.
fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The plan as a readable table: one line per slot, then its tables.
fn render(plan: &Plan, origin: &str) -> String {
    let mut rows: Vec<[String; 6]> = vec![[
        "SLOT".into(),
        "TABLES".into(),
        "SIZE".into(),
        "ROWS".into(),
        "WRITES".into(),
        "NOTES".into(),
    ]];
    for group in &plan.slots {
        let (bytes, estimated_rows, writes) = group.totals();
        rows.push([
            group.slot.clone(),
            group.tables.len().to_string(),
            human_bytes(bytes),
            estimated_rows.to_string(),
            writes.to_string(),
            group.role.note().to_owned(),
        ]);
        for t in &group.tables {
            let mut notes = Vec::new();
            if t.facts.no_primary_key {
                notes.push("no primary key".to_owned());
            }
            if !t.has_identity_index {
                notes.push("insert set only".to_owned());
            }
            if !t.facts.unique_indexes.is_empty() {
                notes.push(format!("unique: {}", t.facts.unique_indexes.join(", ")));
            }
            rows.push([
                format!("  {}", t.table),
                String::new(),
                human_bytes(t.bytes),
                t.facts
                    .estimated_rows
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "?".into()),
                t.facts.write_rate.to_string(),
                notes.join("; "),
            ]);
        }
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "plan ({origin}): {} table(s) in {} slot(s)\n",
        plan.tables().count(),
        plan.slots.len()
    );
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if (1..5).contains(&i) {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            }
            line.push_str("  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if !plan.filters.is_empty() {
        let join = |p: &[pgmig_core::plan::TablePattern]| {
            p.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "filters: include [{}], exclude [{}]\n",
            join(&plan.filters.include),
            join(&plan.filters.exclude)
        ));
    }
    if !plan.deferred.is_empty() {
        out.push_str("deferred until after the load (primary key + other unique indexes):\n");
        for d in &plan.deferred {
            let what = if d.is_constraint {
                "constraint"
            } else {
                "index"
            };
            out.push_str(&format!("  {} {what} {}\n", d.table, d.name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_like_a_dba_expects() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}

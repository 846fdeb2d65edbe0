//! The whole preflight result: [`Report`], with a plain-text table for
//! people and serde for `--json`.

use serde::{Deserialize, Serialize};

use super::finding::{Finding, Severity};

/// Every finding of one `pgmig check` run, in the order the checks ran
/// (source, its slots, replica, target, data).
///
/// Serialized for `--json` as `{"findings":[…]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The findings, in check order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// A report of `findings`, kept in the order given.
    pub fn new(findings: Vec<Finding>) -> Report {
        Report { findings }
    }

    /// Appends one finding.
    pub fn push(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// Whether any finding is a [`Severity::Blocker`]: `pgmig check` then exits 1.
    pub fn has_blockers(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.severity == Severity::Blocker)
    }

    /// The worst severity found; `None` for an empty report.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// How many findings have `severity`.
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// The findings of one check id (several for per-table checks).
    pub fn by_check<'a>(&'a self, check: &'a str) -> impl Iterator<Item = &'a Finding> + 'a {
        self.findings.iter().filter(move |f| f.check == check)
    }

    /// The report as an aligned plain-text table — `SERVER`, `CHECK`,
    /// `STATUS`, `DETAIL` — with each fix on the lines below its finding,
    /// under `DETAIL` and prefixed `fix:`, then a count line. No colour
    /// codes: the CLI may add them.
    ///
    /// ```text
    /// SERVER  CHECK             STATUS   DETAIL
    /// source  source.wal_level  BLOCKER  wal_level is replica; pglogical needs logical
    ///                                    fix: set in postgresql.conf:
    ///                                           wal_level = logical
    /// ```
    pub fn render_text(&self) -> String {
        const HEADERS: [&str; 4] = ["SERVER", "CHECK", "STATUS", "DETAIL"];
        let status = |s: Severity| s.as_str().to_uppercase();
        let width = |header: &str, cells: &mut dyn Iterator<Item = usize>| {
            cells.fold(header.chars().count(), usize::max)
        };
        let w_server = width(
            HEADERS[0],
            &mut self.findings.iter().map(|f| f.server.as_str().len()),
        );
        let w_check = width(HEADERS[1], &mut self.findings.iter().map(|f| f.check.len()));
        let w_status = width(
            HEADERS[2],
            &mut self.findings.iter().map(|f| status(f.severity).len()),
        );
        let indent = " ".repeat(w_server + w_check + w_status + 6);

        let mut out = String::new();
        let row = |out: &mut String, cells: [&str; 4]| {
            let [server, check, state, detail] = cells;
            let line =
                format!("{server:<w_server$}  {check:<w_check$}  {state:<w_status$}  {detail}");
            out.push_str(line.trim_end());
            out.push('\n');
        };
        row(&mut out, HEADERS);
        for f in &self.findings {
            let mut lines = f.summary.lines();
            row(
                &mut out,
                [
                    f.server.as_str(),
                    f.check,
                    &status(f.severity),
                    lines.next().unwrap_or(""),
                ],
            );
            let mut extra: Vec<String> = lines.map(str::to_owned).collect();
            if let Some(fix) = &f.fix {
                for (i, line) in fix.lines().enumerate() {
                    extra.push(if i == 0 {
                        format!("fix: {line}")
                    } else {
                        format!("     {line}")
                    });
                }
            }
            for line in extra {
                let line = format!("{indent}{line}");
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        out.push_str(&format!(
            "\n{}, {}, {}\n",
            plural(self.count(Severity::Blocker), "blocker", "blockers"),
            plural(self.count(Severity::Warn), "warning", "warnings"),
            plural(self.count(Severity::Ok), "ok", "ok"),
        ));
        out
    }
}

impl Extend<Finding> for Report {
    fn extend<I: IntoIterator<Item = Finding>>(&mut self, iter: I) {
        self.findings.extend(iter);
    }
}

impl FromIterator<Finding> for Report {
    fn from_iter<I: IntoIterator<Item = Finding>>(iter: I) -> Self {
        Report::new(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use pgmig_core::ServerRole;

    use super::*;
    use crate::preflight::finding::ids;

    fn sample() -> Report {
        Report::new(vec![
            Finding::ok(ServerRole::Source, ids::SOURCE_VERSION, "PostgreSQL 15.4"),
            Finding::blocker(
                ServerRole::Source,
                ids::SOURCE_WAL_LEVEL,
                "wal_level is replica; pglogical needs logical",
            )
            .with_fix("set in postgresql.conf:\n  wal_level = logical\nthen restart"),
            Finding::warn(ServerRole::Target, ids::TARGET_TLS, "not encrypted"),
        ])
    }

    #[test]
    fn text_table_is_aligned_with_fixes_under_the_detail() {
        let text = sample().render_text();
        let expected = "\
SERVER  CHECK             STATUS   DETAIL
source  source.version    OK       PostgreSQL 15.4
source  source.wal_level  BLOCKER  wal_level is replica; pglogical needs logical
                                   fix: set in postgresql.conf:
                                          wal_level = logical
                                        then restart
target  target.tls        WARN     not encrypted

1 blocker, 1 warning, 1 ok
";
        assert_eq!(text, expected);
        assert!(!text.contains('\u{1b}'), "no colour codes");
    }

    #[test]
    fn counts_and_blockers() {
        let report = sample();
        assert!(report.has_blockers());
        assert_eq!(report.worst(), Some(Severity::Blocker));
        assert_eq!(report.count(Severity::Ok), 1);
        assert_eq!(report.by_check(ids::TARGET_TLS).count(), 1);
        assert!(!Report::default().has_blockers());
        assert_eq!(Report::default().worst(), None);
    }

    #[test]
    fn json_round_trips() {
        let report = sample();
        let json = serde_json::to_string_pretty(&report).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), report);
    }
}

//! What the benchmarks share: the `main` around an async bench, progress
//! lines, locating (or building) the `pgmig` binary, the machine's load.

use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use pgmig_testkit::{Cluster, ClusterSpec, workspace_root};
use serde_json::Value;

/// Runs a bench binary: parses the arguments with `parse` (`Ok(None)`: not
/// under `cargo bench`, nothing to do), then `bench` on a two-thread
/// runtime. Exit 0 when it ran and checked out, 1 when a check failed, 2
/// for bad arguments, 3 when the lab or a step failed.
pub fn main<A, F>(
    name: &str,
    usage: &str,
    parse: impl FnOnce(&[String]) -> Result<Option<A>, String>,
    bench: impl FnOnce(A) -> F,
) -> ExitCode
where
    F: Future<Output = Result<bool, String>>,
{
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&argv) {
        Ok(Some(args)) => args,
        Ok(None) => {
            eprintln!(
                "{name} bench: nothing to do outside `cargo bench` (run `cargo bench -p pgmig-tests --bench {name}`)"
            );
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("{name} bench: {msg}\n{usage}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name} bench: tokio runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(Box::pin(bench(args))) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(msg) => {
            eprintln!("{name} bench: {msg}");
            ExitCode::from(3)
        }
    }
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Starts the clock [`say`] stamps its lines with (else the first line does).
pub fn start_clock() {
    START.get_or_init(Instant::now);
}

/// A progress line on stderr, stamped with the time since the start.
pub fn say(msg: impl AsRef<str>) {
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    let _ = writeln!(std::io::stderr().lock(), "[{t:7.1}s] {}", msg.as_ref());
}

/// Maps a lab error to a message naming what was being done.
pub fn lab_err(what: &str) -> impl Fn(pgmig_testkit::LabError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// `explicit` when given (`--pgmig`), else builds pgmig in release mode and
/// returns the executable cargo reports.
pub fn locate_pgmig(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_owned())
        } else {
            Err(format!("--pgmig {}: no such file", path.display()))
        };
    }
    say("building pgmig: cargo build --release -p pgmig-cli");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "pgmig-cli",
            "--bin",
            "pgmig",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build --release -p pgmig-cli failed ({}; the errors are above; \
             --pgmig PATH uses a binary built earlier)",
            out.status
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "pgmig")
        .filter_map(|v| v["executable"].as_str().map(PathBuf::from))
        .next_back()
        .ok_or_else(|| "cargo build reported no pgmig executable".into())
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` prints them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The machine's memory in GiB (`MemTotal` of `/proc/meminfo`), 0 if unknown.
pub fn ram_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0)
}

/// Starts the benches' lab — a PG15 source with pglogical, its streaming
/// replica, a PG15 target — and creates database `bench` on the source:
/// `(source, replica, target, db)`.
pub async fn start_lab() -> Result<(Cluster, Cluster, Cluster, String), String> {
    say("starting the lab: PG15 source with pglogical, its streaming replica, a PG15 target");
    let source = ClusterSpec::source_pg15()
        .start()
        .await
        .map_err(lab_err("starting the source"))?;
    let (replica, target) = tokio::join!(
        source.create_replica(),
        ClusterSpec::new(15).label("target").start()
    );
    let replica = replica.map_err(lab_err("starting the replica"))?;
    let target = target.map_err(lab_err("starting the target"))?;
    let db = source
        .create_database("bench")
        .await
        .map_err(lab_err("creating the source database"))?;
    Ok((source, replica, target, db))
}

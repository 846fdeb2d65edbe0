//! Running the server tools, as the lab user when the tests run as root.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use tracing::debug;

use crate::error::LabError;
use crate::lab_user::lab_user;

/// One external command line, run directly or through `runuser`.
#[derive(Clone, Debug)]
pub(crate) struct Invocation {
    program: PathBuf,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
}

impl Invocation {
    pub(crate) fn new(program: impl Into<PathBuf>) -> Self {
        Invocation {
            program: program.into(),
            args: Vec::new(),
            cwd: None,
        }
    }

    pub(crate) fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs in `dir` (the lab user must be able to enter it).
    pub(crate) fn current_dir(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// The command line as a shell would show it, with the `runuser` prefix
    /// when the tests run as root.
    pub(crate) fn display(&self) -> String {
        let prefix = match lab_user() {
            Ok(Some(user)) => format!("{} -u {} -- ", runuser(), user.name),
            _ => String::new(),
        };
        let line = std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(|a| {
                let a = a.to_string_lossy();
                if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'') {
                    format!("'{}'", a.replace('\'', "'\\''"))
                } else {
                    a.into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        prefix + &line
    }

    fn std_command(&self) -> Result<std::process::Command, LabError> {
        let mut cmd = match lab_user()? {
            Some(user) => {
                let mut cmd = std::process::Command::new(runuser());
                cmd.args(["-u", &user.name, "--"]).arg(&self.program);
                cmd
            }
            None => std::process::Command::new(&self.program),
        };
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Keep the caller's libpq environment from steering the tools.
            .env_remove("PGDATA")
            .env_remove("PGHOST")
            .env_remove("PGPORT")
            .env_remove("PGUSER")
            .env_remove("PGDATABASE")
            .env_remove("PGSERVICE")
            .env("LC_ALL", "C");
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        Ok(cmd)
    }

    /// Runs to completion; a non-zero exit becomes [`LabError::Command`]
    /// carrying the output and the tail of `log`.
    pub(crate) async fn run(&self, log: &Path) -> Result<Output, LabError> {
        let line = self.display();
        debug!(command = %line, "running");
        let started = std::time::Instant::now();
        let result = tokio::process::Command::from(self.std_command()?)
            .kill_on_drop(true)
            .output()
            .await;
        debug!(command = %line, elapsed_ms = started.elapsed().as_millis() as u64, "finished");
        check(line, result, log)
    }

    /// Like [`Invocation::run`], blocking the thread (for `Drop`).
    pub(crate) fn run_blocking(&self, log: &Path) -> Result<Output, LabError> {
        let line = self.display();
        debug!(command = %line, "running (blocking)");
        check(line, self.std_command()?.output(), log)
    }
}

fn check(line: String, result: std::io::Result<Output>, log: &Path) -> Result<Output, LabError> {
    let failure = |status: String, output: String| LabError::Command {
        command: line.clone(),
        status,
        output,
        log: log.to_path_buf(),
        log_tail: crate::cluster::read_tail(log, 30),
    };
    match result {
        Ok(out) if out.status.success() => Ok(out),
        Ok(out) => {
            let mut text = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
            let stdout = String::from_utf8_lossy(&out.stdout);
            if !stdout.trim().is_empty() {
                text.push_str("\n(stdout) ");
                text.push_str(stdout.trim_end());
            }
            Err(failure(out.status.to_string(), text))
        }
        Err(e) => Err(failure(format!("could not run: {e}"), String::new())),
    }
}

fn runuser() -> &'static str {
    ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("runuser")
}

//! Runs `validate_dms.py` (botocore's parameter validation against the DMS
//! service model, offline) on a directory of generated artifacts. Shared by
//! the tests of several crates (`#[path]`-included).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The validator script.
pub fn script() -> PathBuf {
    pgmig_testkit::workspace_root().join("pgmig-dms/tests/support/validate_dms.py")
}

/// A Python 3 that can import botocore: `PGMIG_PYTHON`, `python3` on the
/// PATH, Debian's `/usr/bin/python3`, or the venv `.ci/install` may make.
pub fn python() -> Option<PathBuf> {
    let venv = pgmig_testkit::workspace_root().join(".cache/botocore-venv/bin/python3");
    let candidates = std::env::var_os("PGMIG_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            PathBuf::from("python3"),
            PathBuf::from("/usr/bin/python3"),
            venv,
        ]);
    candidates.into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import botocore.session, botocore.validate"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Runs the validator on `dir`: `None` after a notice when no Python with
/// botocore is found (outside CI; under `CI=true` that panics), else
/// whether it passed and what it printed.
#[allow(dead_code)]
pub fn run(dir: &Path, secrets: &[&str]) -> Option<(bool, String)> {
    let Some(python) = python() else {
        let msg =
            "no python3 with botocore (apt-get install python3-botocore, or bash .ci/install)";
        if pgmig_testkit::is_ci() {
            panic!("{msg}; CI=true: the botocore validation may not be skipped");
        }
        eprintln!("SKIPPED botocore validation: {msg}");
        return None;
    };
    let out = Command::new(&python)
        .arg(script())
        .arg(dir)
        .args(secrets)
        .output()
        .expect("run the botocore validator");
    let text = format!(
        "{}{}({})",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        python.display()
    );
    Some((out.status.success(), text))
}

/// Validates the artifacts in `dir`, checking that none of `secrets`
/// appears in any file; panics on any problem. Returns `false` when skipped
/// (see [`run`]).
#[allow(dead_code)]
pub fn validate(dir: &Path, secrets: &[&str]) -> bool {
    let Some((ok, text)) = run(dir, secrets) else {
        return false;
    };
    assert!(ok, "botocore validation failed:\n{text}");
    eprintln!("{}", text.trim());
    true
}

//! `dms.sh` run against a stand-in for the AWS CLI (`tests/support/fake-aws`,
//! a tiny DMS keeping endpoints and tasks by identifier): what it calls in
//! which order, that running it again creates nothing, that passwords go
//! through private files and never through the command line, and that a
//! stopped task is resumed, never restarted.

use std::path::Path;
use std::process::{Command, Output};

use pgmig_core::config::ConnConfig;
use pgmig_core::plan::{Plan, PlannedTable, SlotGroup};
use pgmig_core::{Lsn, QualifiedTable};
use pgmig_dms::{
    ArtifactOptions, Credentials, EndpointConn, LobChoice, SOURCE_PASSWORD_ENV,
    TARGET_PASSWORD_ENV, TargetEndpoint, generate, write_artifacts,
};

const SOURCE_PASSWORD: &str = "src 'pa$$' word";
const TARGET_PASSWORD: &str = "tgt-secret";

fn write(dir: &Path) {
    let slot = |name: &str, table: &str| SlotGroup {
        slot: name.into(),
        tables: vec![PlannedTable {
            table: QualifiedTable::new("public", table),
            has_identity_index: true,
            bytes: 1,
            facts: Default::default(),
        }],
        role: Default::default(),
    };
    let plan = Plan {
        slots: vec![slot("dms_slot_01", "a"), slot("dms_slot_02", "b")],
        ..Plan::default()
    };
    let conn = |s: &str| ConnConfig::parse(s).unwrap();
    let source = EndpointConn::from_conn(
        &conn("host=src dbname=app user=u"),
        "source",
        None,
        None,
        None,
    )
    .unwrap();
    let target = EndpointConn::from_conn(
        &conn("host=tgt dbname=app user=u"),
        "target",
        None,
        None,
        None,
    )
    .unwrap();
    let mut opts = ArtifactOptions::new(
        "arn:aws:dms:eu-west-1:1:rep:I",
        source,
        Credentials::PasswordAtCreation {
            env_var: SOURCE_PASSWORD_ENV.into(),
        },
        TargetEndpoint::Create {
            conn: target,
            credentials: Credentials::PasswordAtCreation {
                env_var: TARGET_PASSWORD_ENV.into(),
            },
            engine_name: "postgres".into(),
        },
        LobChoice::Limited(64),
    );
    opts.region = Some("eu-west-1".into());
    let artifacts = generate(&plan, Lsn(0x1_0000_00D0), &opts).unwrap();
    write_artifacts(dir, &artifacts).unwrap();
}

struct Fake {
    bin: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Fake {
    fn new() -> Fake {
        let bin = tempfile::tempdir().unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake-aws");
        std::os::unix::fs::symlink(src, bin.path().join("aws")).unwrap();
        Fake {
            bin,
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, dir: &Path, command: &str, passwords: bool) -> Output {
        let path = format!(
            "{}:{}",
            self.bin.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("bash");
        cmd.arg(dir.join("dms.sh"))
            .arg(command)
            .env("PATH", path)
            .env("FAKE_AWS_STATE", self.state.path())
            .env_remove("AWS_REGION")
            .env_remove(SOURCE_PASSWORD_ENV)
            .env_remove(TARGET_PASSWORD_ENV);
        if passwords {
            cmd.env(SOURCE_PASSWORD_ENV, SOURCE_PASSWORD)
                .env(TARGET_PASSWORD_ENV, TARGET_PASSWORD);
        }
        cmd.output().unwrap()
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.state.path().join(name)).unwrap_or_default()
    }
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\n{}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn dms_sh_creates_starts_resumes_and_never_recreates() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path());
    let fake = Fake::new();

    // Without the passwords: refused before anything is created.
    let o = fake.run(dir.path(), "create", false);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains(TARGET_PASSWORD_ENV));
    assert!(!fake.file("calls").contains("create-endpoint"));

    let o = fake.run(dir.path(), "create", true);
    ok(&o);
    assert_eq!(
        fake.file("passwords"),
        format!(
            "pgmig-target={TARGET_PASSWORD}\npgmig-src-dms-slot-01={SOURCE_PASSWORD}\n\
             pgmig-src-dms-slot-02={SOURCE_PASSWORD}\n"
        )
    );
    for file in fake.file("password-files").lines() {
        assert!(!Path::new(file).exists(), "{file} was left behind");
    }
    let calls = fake.file("calls");
    assert!(!calls.contains(SOURCE_PASSWORD) && !calls.contains(TARGET_PASSWORD));
    assert!(
        calls
            .lines()
            .all(|l| l.starts_with("dms --region eu-west-1 ")),
        "{calls}"
    );
    assert_eq!(
        fake.file("tasks"),
        "pgmig-dms-slot-01 src=arn:endpoint:pgmig-src-dms-slot-01 tgt=arn:endpoint:pgmig-target start=1/D0\n\
         pgmig-dms-slot-02 src=arn:endpoint:pgmig-src-dms-slot-02 tgt=arn:endpoint:pgmig-target start=1/D0\n"
    );

    // Again: everything exists, nothing is created.
    let creates = |fake: &Fake| fake.file("calls").matches(" create-").count();
    let before = creates(&fake);
    ok(&fake.run(dir.path(), "create", true));
    assert_eq!(creates(&fake), before);

    ok(&fake.run(dir.path(), "start", false));
    ok(&fake.run(dir.path(), "start", false)); // running: nothing to do
    ok(&fake.run(dir.path(), "stop", false));
    ok(&fake.run(dir.path(), "start", false));
    assert_eq!(
        fake.file("starts"),
        "pgmig-dms-slot-01 start-replication\npgmig-dms-slot-02 start-replication\n\
         pgmig-dms-slot-01 resume-processing\npgmig-dms-slot-02 resume-processing\n"
    );

    let o = fake.run(dir.path(), "status", false);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("pgmig-dms-slot-01,pgmig-dms-slot-02"));
    let o = fake.run(dir.path(), "stats", false);
    ok(&o);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("statistics of arn:task:pgmig-dms-slot-02")
    );
    assert_eq!(
        fake.run(dir.path(), "nonsense", false).status.code(),
        Some(2)
    );
}

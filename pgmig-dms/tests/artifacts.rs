//! The artifacts of a plan with awkward names, written to a directory and
//! checked against the AWS DMS service model with botocore (offline), in
//! both password modes; no password in any file. No server needed.

#[path = "support/botocore.rs"]
mod botocore;

use std::path::Path;

use pgmig_core::config::ConnConfig;
use pgmig_core::plan::{Plan, PlannedTable, SlotGroup};
use pgmig_core::{Lsn, QualifiedTable};
use pgmig_dms::lob::{LobColumn, LobKind, MeasuredColumn};
use pgmig_dms::{
    ArtifactOptions, Credentials, EndpointConn, LobChoice, LobMeasurement, LobMode, LobPolicy,
    SOURCE_PASSWORD_ENV, TARGET_PASSWORD_ENV, TargetEndpoint, generate, write_artifacts,
};

const PASSWORD: &str = "Pa55-w0rd_that_must_never_show";

fn plan() -> Plan {
    let t = |schema: &str, name: &str, pk| {
        PlannedTable::new(QualifiedTable::new(schema, name), pk, 1 << 20)
    };
    Plan::from_slots(vec![
        SlotGroup::new(
            "dms_slot_01",
            vec![
                t("public", "order_items", true),
                t("Sales", "Order Items", true),
                t("public", "100%_done", true),
            ],
        ),
        SlotGroup::new(
            "dms_slot_02",
            vec![
                t("données", "été_[x]", true),
                t("public", "audit_log", false),
            ],
        ),
    ])
}

fn measurement() -> LobMeasurement {
    let col = |schema: &str, name: &str, column: &str, kind, max_bytes| MeasuredColumn {
        column: LobColumn {
            table: QualifiedTable::new(schema, name),
            column: column.into(),
            type_name: "text".into(),
            kind,
        },
        max_bytes,
    };
    LobMeasurement {
        columns: vec![
            col("Sales", "Order Items", "doc", LobKind::Rendered, 300_000),
            col("public", "order_items", "raw", LobKind::Binary, 900_000),
            col("public", "audit_log", "msg", LobKind::Text, 200 << 20),
        ],
    }
}

fn conn(dsn: &str) -> ConnConfig {
    ConnConfig::parse(dsn).unwrap()
}

fn options(secrets: bool) -> ArtifactOptions {
    let source = conn(&format!(
        "host=prod.internal port=5432 dbname=app user=migrator password={PASSWORD} sslmode=prefer"
    ));
    let target = conn(&format!(
        "postgres://admin:{PASSWORD}@new.abc.eu-west-1.rds.amazonaws.com:5432/app?sslmode=require"
    ));
    let source = EndpointConn::from_conn(&source, "source", None, None, None).unwrap();
    let target = EndpointConn::from_conn(&target, "target", None, None, None).unwrap();
    let (source_credentials, target_credentials) = if secrets {
        let role = "arn:aws:iam::123456789012:role/pgmig-dms-secrets".to_string();
        (
            Credentials::SecretsManager {
                secret_id: "pgmig/source".into(),
                access_role_arn: role.clone(),
            },
            Credentials::SecretsManager {
                secret_id: "pgmig/target".into(),
                access_role_arn: role,
            },
        )
    } else {
        (
            Credentials::PasswordAtCreation {
                env_var: SOURCE_PASSWORD_ENV.into(),
            },
            Credentials::PasswordAtCreation {
                env_var: TARGET_PASSWORD_ENV.into(),
            },
        )
    };
    let mut opts = ArtifactOptions::new(
        "arn:aws:dms:eu-west-1:123456789012:rep:PGMIGINSTANCE",
        source,
        source_credentials,
        TargetEndpoint::Create {
            conn: target,
            credentials: target_credentials,
            engine_name: "postgres".into(),
        },
        LobChoice::Measured(measurement(), LobPolicy::default()),
    );
    opts.region = Some("eu-west-1".into());
    opts
}

fn read(dir: &Path, rel: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(rel)).unwrap()).unwrap()
}

#[test]
fn artifacts_are_valid_dms_inputs_without_passwords() {
    let p: Lsn = "35FE3/B63D4718".parse().unwrap();
    for secrets in [false, true] {
        let artifacts = generate(&plan(), p, &options(secrets)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let files = write_artifacts(dir.path(), &artifacts).unwrap();
        assert_eq!(files.len(), 4 + 2 * 4, "{files:?}");

        let task = read(dir.path(), "pgmig-dms-slot-01/create-replication-task.json");
        assert_eq!(task["ReplicationTaskIdentifier"], "pgmig-dms-slot-01");
        assert_eq!(task["MigrationType"], "cdc");
        assert_eq!(task["CdcStartPosition"], "35FE3/B63D4718");
        let mappings: serde_json::Value =
            serde_json::from_str(task["TableMappings"].as_str().unwrap()).unwrap();
        let names: Vec<(&str, &str)> = mappings["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let loc = &r["object-locator"];
                (
                    loc["schema-name"].as_str().unwrap(),
                    loc["table-name"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("public", "order[_]items"),
                ("Sales", "Order Items"),
                ("public", "100[%][_]done")
            ]
        );
        let settings: serde_json::Value =
            serde_json::from_str(task["ReplicationTaskSettings"].as_str().unwrap()).unwrap();
        // Largest as DMS counts it: the 900 000-byte bytea (879 KB) beats
        // the 300 000-byte JSON (600 000 as UTF-16); +50 % = 1319 KB.
        assert_eq!(settings["TargetMetadata"]["LobMaxSize"], 1319);
        assert_eq!(settings["TargetMetadata"]["LimitedSizeLobMode"], true);
        // Slot 2 holds a 200 MB text: full LOB mode.
        assert_eq!(artifacts.slots[1].lob.mode, LobMode::Full { chunk_kb: 64 });
        let mappings2 = read(dir.path(), "pgmig-dms-slot-02/table-mappings.json");
        assert_eq!(
            mappings2["rules"][0]["object-locator"]["table-name"],
            "été[_][[]x]"
        );

        let src = read(dir.path(), "pgmig-dms-slot-02/source-endpoint.json");
        assert_eq!(src["EndpointIdentifier"], "pgmig-src-dms-slot-02");
        assert_eq!(src["PostgreSQLSettings"]["SlotName"], "dms_slot_02");
        assert_eq!(src["SslMode"], "require");
        let target = read(dir.path(), "target-endpoint.json");
        assert_eq!(target["EndpointType"], "target");
        if secrets {
            assert!(src.get("ServerName").is_none());
            assert_eq!(
                target["PostgreSQLSettings"]["SecretsManagerSecretId"],
                "pgmig/target"
            );
        } else {
            assert_eq!(src["ServerName"], "prod.internal");
            assert_eq!(target["ServerName"], "new.abc.eu-west-1.rds.amazonaws.com");
            let script = std::fs::read_to_string(dir.path().join("dms.sh")).unwrap();
            assert!(script.contains(SOURCE_PASSWORD_ENV) && script.contains(TARGET_PASSWORD_ENV));
        }
        let manifest = read(dir.path(), "manifest.json");
        assert_eq!(manifest["pause_lsn"], "35FE3/B63D4718");
        assert!(
            manifest["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w.as_str().unwrap().contains("audit_log has no primary key")),
            "{manifest}"
        );

        for path in walk(dir.path()) {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains(PASSWORD),
                "{} holds the password",
                path.display()
            );
        }
        let status = std::process::Command::new("bash")
            .arg("-n")
            .arg(dir.path().join("dms.sh"))
            .status()
            .unwrap();
        assert!(status.success(), "dms.sh is not valid bash");

        botocore::validate(dir.path(), &[PASSWORD]);
    }
}

#[test]
fn the_validator_catches_broken_inputs() {
    let artifacts = generate(&plan(), Lsn(0x10), &options(false)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_artifacts(dir.path(), &artifacts).unwrap();
    let edit = |rel: &str, f: &dyn Fn(&mut serde_json::Value)| {
        let path = dir.path().join(rel);
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
    };
    edit("target-endpoint.json", &|v| {
        v["SslMode"] = "none".into();
        v["Password"] = "hunter2".into();
    });
    edit("pgmig-dms-slot-01/source-endpoint.json", &|v| {
        v["NoSuchParameter"] = 1.into();
    });
    edit("pgmig-dms-slot-01/create-replication-task.json", &|v| {
        v["TableMappings"] = serde_json::json!({"rules": [{"rule-type": "selection", "rule-id": "1", "rule-name": "1",
            "object-locator": {"schema-name": "public", "table-name": "order_items"}, "rule-action": "include"}]})
        .to_string()
        .into();
        v["ReplicationTaskIdentifier"] = "pgmig_dms_slot_01".into();
    });
    let Some((ok, text)) = botocore::run(dir.path(), &["hunter2"]) else {
        return;
    };
    assert!(!ok, "{text}");
    for expected in [
        "SslMode 'none'",
        "carries a password",
        "contains a password",
        "NoSuchParameter",
        "unescaped wildcard",
        "identifier 'pgmig_dms_slot_01'",
        "table-mappings.json differs",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
}

#[test]
fn warnings_name_what_dms_handles_badly() {
    let mut plan = plan();
    plan.slots[1].tables.push(PlannedTable::new(
        QualifiedTable::new("public", "Audit_Log"),
        true,
        1 << 20,
    ));
    let mut m = measurement();
    m.columns.push(MeasuredColumn {
        column: LobColumn {
            table: QualifiedTable::new("public", "audit_log"),
            column: "tags".into(),
            type_name: "text[]".into(),
            kind: LobKind::Rendered,
        },
        max_bytes: 10,
    });
    let mut opts = options(false);
    opts.lob = LobChoice::Measured(m, LobPolicy::default());
    let a = generate(&plan, Lsn(1), &opts).unwrap();
    let all = a.warnings.join("\n");
    for expected in [
        "public.audit_log has no replica-identity index",
        "public.audit_log has an array column (tags) and no primary key",
        "public.audit_log and public.\"Audit_Log\" differ only in case",
        "public.audit_log has no primary key; DMS cannot look its LOBs up in full LOB mode",
        "TRUNCATE",
    ] {
        assert!(all.contains(expected), "{expected:?} not in:\n{all}");
    }
}

#[test]
fn generating_again_gives_the_same_files() {
    let p = Lsn(0x16_B374_D848);
    let a = generate(&plan(), p, &options(false)).unwrap();
    let b = generate(&plan(), p, &options(false)).unwrap();
    assert_eq!(a, b);
    let dir = tempfile::tempdir().unwrap();
    write_artifacts(dir.path(), &a).unwrap();
    let first: Vec<_> = walk(dir.path())
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    write_artifacts(dir.path(), &b).unwrap();
    let second: Vec<_> = walk(dir.path())
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(first, second);
}

#[test]
fn empty_slots_and_bad_prefixes_are_refused() {
    let p = Lsn(1);
    let mut empty = plan();
    empty.slots[1].tables.clear();
    let err = generate(&empty, p, &options(false)).unwrap_err();
    assert!(err.is_usage(), "{err}");
    let mut opts = options(false);
    opts.prefix = "pg_mig_".into();
    let err = generate(&plan(), p, &opts).unwrap_err();
    assert!(err.to_string().contains("invalid DMS identifier"), "{err}");
}

fn walk(dir: &Path) -> impl Iterator<Item = std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for e in entries {
            if e.is_dir() {
                stack.push(e);
            } else {
                out.push(e);
            }
        }
    }
    out.sort();
    out.into_iter()
}

//! `pgmig plan` through the real binary against a PG15 source: build, write
//! the config file without the password, read it back and validate it,
//! refuse an edited plan naming a missing table (exit 2).

use std::path::Path;
use std::process::{Command, Output};

use pgmig_testkit::{Lab, skip_unless_available};

const SCHEMA: &str = r#"
CREATE SCHEMA "Sales";
CREATE TABLE "Sales"."Order Items" (id bigserial PRIMARY KEY, sku text NOT NULL);
CREATE TABLE public."user" (id int PRIMARY KEY, email text NOT NULL UNIQUE);
CREATE TABLE public.audit_log (ts timestamptz, msg text);
CREATE TABLE public.big (id int PRIMARY KEY, pad text);
INSERT INTO public.big SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g;
ANALYZE;
"#;

fn pgmig(dir: &Path, args: &[&str], source: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgmig"));
    cmd.args(args)
        .env_remove("PGMIG_SOURCE")
        .env_remove("PGMIG_REPLICA")
        .env_remove("PGMIG_TARGET")
        .env_remove("RUST_LOG")
        .current_dir(dir);
    if let Some(source) = source {
        cmd.env("PGMIG_SOURCE", source);
    }
    cmd.output().expect("run pgmig")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_writes_validates_and_refuses() {
    skip_unless_available!(pglogical);
    let source = Lab::source_pg15().await.unwrap();
    let db = source.create_database("plancli").await.unwrap();
    source.execute(&db, SCHEMA).await.unwrap();
    // Trust authentication ignores the password; it must never be written.
    let dsn = format!("{} password=Sekr3tPw", source.conninfo(&db));
    let dir = std::env::temp_dir().join(format!("pgmig-plan-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pgmig.toml");
    let _ = std::fs::remove_file(&file);

    let o = pgmig(
        &dir,
        &["plan", "--slots", "4", "--write", file.to_str().unwrap()],
        Some(&dsn),
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("dms_slot_01"), "{out}");
    assert!(out.contains("public.\"user\""), "{out}");
    assert!(!out.contains("Sekr3tPw"), "{out}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(!written.contains("Sekr3tPw"), "{written}");
    assert!(written.contains("[source]"), "{written}");
    assert!(written.contains("user_email_key"), "{written}");

    // Read back from ./pgmig.toml (no flags, no env): validated, same plan.
    let o = pgmig(&dir, &["plan", "--json"], None);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["origin"], "validated");
    let slots = report["plan"]["slots"].as_array().unwrap();
    let tables: usize = slots
        .iter()
        .map(|s| s["tables"].as_array().unwrap().len())
        .sum();
    assert_eq!(tables, 4);

    // Filters from the flags leave out what they say (no config file here).
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let o = pgmig(
        &elsewhere,
        &[
            "plan",
            "--json",
            "--exclude",
            "public.big",
            "--exclude",
            "\"Sales\".*",
        ],
        Some(&dsn),
    );
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["origin"], "built");
    let names: Vec<String> = report["plan"]["slots"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["tables"].as_array().unwrap().clone())
        .map(|t| t["table"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n == "public.big" || n.starts_with("\"Sales\""))
    );

    // An edited plan naming a missing table: exit 2, naming it.
    let edited = written.replace("table = \"public.big\"", "table = \"public.gone\"");
    assert_ne!(edited, written, "{written}");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, edited).unwrap();
    let o = pgmig(&dir, &["--config", bad.to_str().unwrap(), "plan"], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("public.gone"), "{}", text(&o));

    // An invalid slot name: exit 2.
    let renamed = written.replace("dms_slot_01", "Bad-Slot");
    std::fs::write(&bad, renamed).unwrap();
    let o = pgmig(&dir, &["--config", bad.to_str().unwrap(), "plan"], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("Bad-Slot"), "{}", text(&o));

    let _ = std::fs::remove_dir_all(&dir);
}

//! `pgmig lsn compare`: output and exit codes of the real binary.

use std::process::{Command, Output};

fn pgmig(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgmig"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run pgmig")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn prints_order_and_distance() {
    let cases = [
        (["35FE3/B63D4718", "35FE3/B63D4717"], "> 1\n"),
        (["35FE3/B63D4717", "35FE3/B63D4718"], "< 1\n"),
        (["16/b374d848", "16/B374D848"], "= 0\n"),
        // As text "9/0" sorts after "10/0"; as LSNs it is 7 GiB before it.
        (["9/0", "10/0"], "< 30064771072\n"),
        (["FFFFFFFF/FFFFFFFF", "0/0"], "> 18446744073709551615\n"),
    ];
    for (args, want) in cases {
        let out = pgmig(&["lsn", "compare", args[0], args[1]]);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), want, "{args:?}");
    }
}

#[test]
fn json_output() {
    let out = pgmig(&["lsn", "compare", "--json", "0/10", "0/1"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        doc,
        serde_json::json!({"a": "0/10", "b": "0/1", "order": ">", "distance_bytes": 15})
    );
}

#[test]
fn malformed_lsn_exits_2_naming_it() {
    for (args, named) in [
        (
            ["1/G", "0/0"],
            "invalid LSN \"1/G\": not a hexadecimal number",
        ),
        (["0/0", "12345"], "invalid LSN \"12345\": missing '/'"),
        (
            ["0/0", "100000000/0"],
            "invalid LSN \"100000000/0\": a half is larger than 32 bits",
        ),
    ] {
        let out = pgmig(&["lsn", "compare", args[0], args[1]]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stdout(&out).is_empty(), "{args:?}");
        assert!(stderr(&out).contains(named), "{args:?}: {}", stderr(&out));
    }
}

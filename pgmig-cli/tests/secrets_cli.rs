//! No secret leaks, through the real binary on real servers.
//!
//! Every server requires a password for the role `mig` (scram-sha-256 in
//! `pg_hba.conf`; the lab superuser keeps trust for the testkit): one
//! password on the source (and so on its replica, whose walreceiver logs in
//! with it too) and another on the target that needs quoting and
//! percent-encoding (`@`, `/`, `%`, space, `'`). A whole migration — check,
//! plan --write, run --dry-run, setup, snapshot, schema, load, verify, dms
//! generate, status, resume-replica, cdc --until-caught-up, cutover,
//! cleanup --dry-run, lsn compare, --help — runs with every command
//! repeated over every way of giving the passwords (key=value DSN, URL
//! with the password in the user part or as `?password=`, passfile,
//! `PGPASSWORD`; connections in `PGMIG_*`, in flags and in the config
//! file), once with `-vvv` and text output and once with `--json` and
//! `RUST_LOG=trace`. Then what must fail fails: a wrong password (refused
//! by the server, on every channel), an unreachable port or host, malformed
//! DSNs and URLs, a DSN where clap expects something else, a pglogical node
//! DSN holding a password, a hand-written config file with passwords that
//! is broken.
//!
//! Neither password — nor any distinctive piece of one, nor its
//! percent-encoded form — ever appears in stdout or stderr, in any file
//! pgmig wrote (the config/plan file, the DMS files), in the target's
//! `pgmig` schema, in pglogical's catalog on the source (node DSN, node,
//! set names), in slot names, in `pg_stat_activity` (sampled on the three
//! servers throughout), or in the server logs with `log_statement = all`
//! (so in no statement or bound parameter pgmig sends). The migration ends
//! with source and target equal.

use std::collections::BTreeSet;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{Lab3, WAIT, text};
use pgmig_testkit::{Cluster, skip_unless_available};
use tokio_postgres::SimpleQueryMessage;

const DATA: &str = r#"
CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2));
INSERT INTO public.items SELECT g, 'item ' || g, g * 0.5 FROM generate_series(1, 3000) g;
CREATE TABLE public.notes (id bigserial PRIMARY KEY, body text);
INSERT INTO public.notes (body) SELECT md5(g::text) FROM generate_series(1, 800) g;
CREATE TABLE public.log (ts timestamptz NOT NULL DEFAULT now(), msg text);
INSERT INTO public.log (msg) SELECT 'm' || g FROM generate_series(1, 400) g;
"#;

/// Source writes after the load, for CDC to carry.
const WRITES: &str = r#"
INSERT INTO public.items SELECT g, 'new ' || g, g FROM generate_series(3001, 3200) g;
UPDATE public.items SET price = price + 1 WHERE id % 7 = 0;
DELETE FROM public.items WHERE id % 11 = 0;
INSERT INTO public.notes (body) SELECT 'cdc ' || g FROM generate_series(1, 50) g;
DELETE FROM public.notes WHERE id < 20;
INSERT INTO public.log (msg) SELECT 'cdc ' || g FROM generate_series(1, 30) g;
"#;

const TABLES: &[&str] = &["public.items", "public.notes", "public.log"];

/// The role pgmig logs in as on every server.
const ROLE: &str = "mig";

const ARN: &str = "arn:aws:dms:eu-west-1:123456789012:rep:SECRETSTEST";

/// A distinctive word made of the letters g–z only, so that no hex digest,
/// LSN or number in the output can contain it by chance.
fn token() -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    let mut v = h.finish();
    let mut s = String::from("Qz");
    for _ in 0..10 {
        s.push(char::from(b'g' + (v % 20) as u8));
        v /= 20;
    }
    s
}

/// The two passwords and every form or piece of them that must not leak.
struct Secrets {
    source: String,
    target: String,
    needles: Vec<String>,
}

impl Secrets {
    fn new() -> Secrets {
        let (a, b, c) = (token(), token(), token());
        let source = format!("S3cr3t-{a}");
        // Needs quoting in a key=value string and percent-encoding in a URL;
        // a redactor that stops at a space, '@', '/' or quote would leave a
        // distinctive piece.
        let target = format!("T@rg/et%{b} 'q'{c}");
        let needles = vec![
            source.clone(),
            target.clone(),
            percent_encode(&target),
            a,
            b,
            c,
        ];
        Secrets {
            source,
            target,
            needles,
        }
    }

    /// Panics, showing the context with the secret masked, when `haystack`
    /// holds any form or piece of a password.
    fn assert_absent(&self, what: &str, haystack: &str) {
        for needle in &self.needles {
            if let Some(at) = haystack.find(needle.as_str()) {
                let start = floor_char_boundary(haystack, at.saturating_sub(300));
                let end =
                    floor_char_boundary(haystack, (at + needle.len() + 300).min(haystack.len()));
                let mut context = haystack[start..end].to_owned();
                for n in &self.needles {
                    context = context.replace(n.as_str(), "<SECRET>");
                }
                panic!("a password leaked into {what}:\n…{context}…");
            }
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Every byte outside the URL's unreserved set as `%XX`.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A key=value value, quoted.
fn conninfo_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A passfile field.
fn passfile_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace(':', "\\:")
}

/// An SQL string literal.
fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// How the passwords reach pgmig.
#[derive(Clone, Copy, Debug)]
enum Channel {
    /// `password='…'` in key=value strings.
    Dsn,
    /// `postgres://mig:<percent-encoded>@host:port/db` with `-vvv`,
    /// `postgresql://mig@host:port/db?password=<percent-encoded>` with
    /// `--json`.
    Url,
    /// No password in the strings; `PGPASSFILE` (0600) holds both.
    Passfile,
    /// `PGPASSWORD`: the source's (and the replica's) password with
    /// `-vvv`, the target's with `--json`; the other server's password in
    /// its string (`PGPASSWORD` applies to every connection).
    Env,
}

/// How pgmig is asked to talk.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// `-vvv`, text output, connections in `PGMIG_*`.
    VerboseText,
    /// `--json` and `RUST_LOG=trace`, connections as `--source` /
    /// `--replica` / `--target` flags (or, with a passfile, only from the
    /// config file once there is one).
    JsonTrace,
}

const COMBOS: [(Channel, Mode); 8] = [
    (Channel::Dsn, Mode::VerboseText),
    (Channel::Url, Mode::JsonTrace),
    (Channel::Passfile, Mode::VerboseText),
    (Channel::Env, Mode::JsonTrace),
    (Channel::Url, Mode::VerboseText),
    (Channel::Dsn, Mode::JsonTrace),
    (Channel::Env, Mode::VerboseText),
    (Channel::Passfile, Mode::JsonTrace),
];

/// The three connection strings of one invocation and the environment
/// that goes with them.
struct Conns {
    source: String,
    replica: String,
    target: String,
    env: Vec<(&'static str, String)>,
}

/// Whether pgmig connects with the right passwords or a wrong one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Passwords {
    Right,
    Wrong,
}

/// The lab, the secrets, and where pgmig's files go.
struct Harness {
    lab: Lab3,
    secrets: Secrets,
    /// pgmig's working directory: every file in it is searched at the end.
    work: PathBuf,
    /// Holds the passfiles (outside `work`: they hold the passwords).
    private: PathBuf,
    /// The config file, once `plan --write` wrote it.
    config: Option<PathBuf>,
    invocations: usize,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
        let _ = std::fs::remove_dir_all(&self.private);
    }
}

impl Harness {
    fn passwords(&self, which: Passwords) -> (String, String) {
        match which {
            Passwords::Right => (self.secrets.source.clone(), self.secrets.target.clone()),
            Passwords::Wrong => (
                format!("{}-wrong", self.secrets.source),
                format!("{}-wrong", self.secrets.target),
            ),
        }
    }

    fn passfile(&self, which: Passwords) -> PathBuf {
        self.private.join(match which {
            Passwords::Right => "pgpass",
            Passwords::Wrong => "pgpass-wrong",
        })
    }

    /// `host port user dbname` of a server, without a password.
    fn bare(cluster: &Cluster, db: &str) -> String {
        format!(
            "host={} port={} user={ROLE} dbname={db} connect_timeout=20",
            cluster.host(),
            cluster.port()
        )
    }

    fn kv(cluster: &Cluster, db: &str, password: &str) -> String {
        format!(
            "{} password={}",
            Self::bare(cluster, db),
            conninfo_quote(password)
        )
    }

    fn url(cluster: &Cluster, db: &str, password: Option<&str>) -> String {
        let user = match password {
            Some(p) => format!("{ROLE}:{}", percent_encode(p)),
            None => ROLE.to_owned(),
        };
        format!(
            "postgres://{user}@{}:{}/{db}?connect_timeout=20",
            cluster.host(),
            cluster.port()
        )
    }

    fn url_query(cluster: &Cluster, db: &str, password: &str) -> String {
        format!(
            "postgresql://{ROLE}@{}:{}/{db}?password={}&connect_timeout=20",
            cluster.host(),
            cluster.port(),
            percent_encode(password)
        )
    }

    fn conns(&self, channel: Channel, mode: Mode, which: Passwords) -> Conns {
        let lab = &self.lab;
        let (s, r, t) = (
            (&lab.source, lab.db.as_str()),
            (&lab.replica, lab.db.as_str()),
            (&lab.target, lab.target_db.as_str()),
        );
        let (spw, tpw) = self.passwords(which);
        match channel {
            Channel::Dsn => Conns {
                source: Self::kv(s.0, s.1, &spw),
                replica: Self::kv(r.0, r.1, &spw),
                target: Self::kv(t.0, t.1, &tpw),
                env: vec![],
            },
            Channel::Url => match mode {
                Mode::VerboseText => Conns {
                    source: Self::url(s.0, s.1, Some(&spw)),
                    replica: Self::url(r.0, r.1, Some(&spw)),
                    target: Self::url(t.0, t.1, Some(&tpw)),
                    env: vec![],
                },
                // The password as a query parameter.
                Mode::JsonTrace => Conns {
                    source: Self::url_query(s.0, s.1, &spw),
                    replica: Self::url_query(r.0, r.1, &spw),
                    target: Self::url_query(t.0, t.1, &tpw),
                    env: vec![],
                },
            },
            Channel::Passfile => Conns {
                source: Self::bare(s.0, s.1),
                replica: Self::bare(r.0, r.1),
                target: Self::bare(t.0, t.1),
                env: vec![(
                    "PGPASSFILE",
                    self.passfile(which).to_string_lossy().into_owned(),
                )],
            },
            Channel::Env => match mode {
                Mode::VerboseText => Conns {
                    source: Self::bare(s.0, s.1),
                    replica: Self::bare(r.0, r.1),
                    target: Self::kv(t.0, t.1, &tpw),
                    env: vec![("PGPASSWORD", spw)],
                },
                Mode::JsonTrace => Conns {
                    source: Self::url(s.0, s.1, Some(&spw)),
                    replica: Self::url(r.0, r.1, Some(&spw)),
                    target: Self::url(t.0, t.1, None),
                    env: vec![("PGPASSWORD", tpw)],
                },
            },
        }
    }

    /// `pgmig <args>` over `channel` and `mode`, run to the end; asserts
    /// nothing leaked into its stdout or stderr, and returns the output.
    async fn invoke(
        &mut self,
        channel: Channel,
        mode: Mode,
        which: Passwords,
        args: &[&str],
    ) -> Output {
        let conns = self.conns(channel, mode, which);
        self.invoke_with(channel, mode, &conns, args).await
    }

    async fn invoke_with(
        &mut self,
        channel: Channel,
        mode: Mode,
        conns: &Conns,
        args: &[&str],
    ) -> Output {
        let mut all: Vec<String> = Vec::new();
        match mode {
            Mode::VerboseText => all.push("-vvv".into()),
            Mode::JsonTrace => all.push("--json".into()),
        }
        if let Some(config) = &self.config {
            all.push("--config".into());
            all.push(config.to_string_lossy().into_owned());
        }
        let from_config_only = matches!((channel, mode), (Channel::Passfile, Mode::JsonTrace))
            && self.config.is_some();
        if matches!(mode, Mode::JsonTrace) && !from_config_only {
            for (flag, dsn) in [
                ("--source", &conns.source),
                ("--replica", &conns.replica),
                ("--target", &conns.target),
            ] {
                all.push(flag.into());
                all.push(dsn.clone());
            }
        }
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let mut cmd = self
            .lab
            .command_with(&all, &conns.source, &conns.replica, &conns.target);
        if matches!(mode, Mode::JsonTrace) {
            cmd.env_remove("PGMIG_SOURCE")
                .env_remove("PGMIG_REPLICA")
                .env_remove("PGMIG_TARGET")
                .env("RUST_LOG", "trace");
        }
        for var in [
            "PGPASSWORD",
            "PGPASSFILE",
            "PGUSER",
            "PGHOST",
            "PGHOSTADDR",
            "PGPORT",
            "PGDATABASE",
            "PGSERVICE",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in &conns.env {
            cmd.env(k, v);
        }
        cmd.env("HOME", &self.work)
            .current_dir(&self.work)
            .stdin(std::process::Stdio::null());
        let out = tokio::time::timeout(Duration::from_secs(600), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("pgmig {args:?} over {channel:?}/{mode:?} hung"))
            .expect("run pgmig");
        self.invocations += 1;
        let what = format!("the output of pgmig {args:?} over {channel:?}/{mode:?}");
        self.secrets.assert_absent(&what, &text(&out));
        out
    }

    /// Runs `args` once over every channel and mode, the first from a
    /// different combination for each `step`; each must exit `code`.
    async fn everywhere(&mut self, step: usize, args: &[&str], code: i32) -> Vec<Output> {
        let mut outs = Vec::new();
        for k in 0..COMBOS.len() {
            let (channel, mode) = COMBOS[(step + k) % COMBOS.len()];
            let out = self.invoke(channel, mode, Passwords::Right, args).await;
            assert_eq!(
                out.status.code(),
                Some(code),
                "pgmig {args:?} over {channel:?}/{mode:?}\n{}",
                masked(&self.secrets, &text(&out))
            );
            outs.push(out);
        }
        outs
    }
}

/// `text` with every needle masked, for assertion messages.
fn masked(secrets: &Secrets, s: &str) -> String {
    let mut s = s.to_owned();
    for n in &secrets.needles {
        s = s.replace(n.as_str(), "<SECRET>");
    }
    s
}

/// Requires scram-sha-256 for `mig` over TCP, keeps trust for the rest,
/// and reloads the configuration.
async fn require_password(cluster: &Cluster, db: &str) {
    let hba = cluster.data_dir().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    let new = format!(
        "# pgmig secrets test: passwords for {ROLE}\n\
         host all {ROLE} 127.0.0.1/32 scram-sha-256\n\
         host replication {ROLE} 127.0.0.1/32 scram-sha-256\n\
         {old}"
    );
    // Rewritten in place: the file keeps its owner.
    std::fs::write(&hba, new).expect("write pg_hba.conf");
    cluster
        .execute(db, "SELECT pg_reload_conf()")
        .await
        .expect("reload");
}

/// Connects as `mig` with `password`: the server's SQLSTATE on refusal.
async fn try_login(cluster: &Cluster, db: &str, password: &str) -> Result<(), String> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(cluster.host())
        .port(cluster.port())
        .user(ROLE)
        .dbname(db)
        .password(password)
        .connect_timeout(Duration::from_secs(20));
    match cfg.connect(tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| format!("{:?}", e.code()))?;
            Ok(())
        }
        Err(e) => Err(e
            .code()
            .map_or_else(|| "no SQLSTATE".to_owned(), |c| c.code().to_owned())),
    }
}

/// Waits until `cluster` refuses a wrong password for `mig` (the reload
/// took) and accepts the right one.
async fn assert_password_required(cluster: &Cluster, db: &str, password: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        match try_login(cluster, db, &format!("{password}-wrong")).await {
            // 28P01: invalid_password.
            Err(code) if code == "28P01" => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "{}: a wrong password is not refused: {other:?}",
                    cluster.label()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    try_login(cluster, db, password)
        .await
        .unwrap_or_else(|e| panic!("{}: the right password is refused: {e}", cluster.label()));
}

/// Every row of every table of `schema` in `db`, as text, one per line.
async fn dump_schema(cluster: &Cluster, db: &str, schema: &str) -> (String, usize) {
    let client = cluster.connect(db).await.unwrap();
    let tables = client
        .query(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap();
    let mut out = String::new();
    let mut rows = 0;
    for t in &tables {
        let name: String = t.get(0);
        for m in client
            .simple_query(&format!("SELECT t::text FROM {name} t"))
            .await
            .unwrap()
        {
            if let SimpleQueryMessage::Row(row) = m {
                out.push_str(&name);
                out.push_str(": ");
                out.push_str(row.get(0).unwrap_or("NULL"));
                out.push('\n');
                rows += 1;
            }
        }
    }
    (out, rows)
}

/// Samples `pg_stat_activity` (user, application name, client, query) on
/// each server every 100 ms until stopped; returns every distinct line seen.
fn watch_activity(
    clients: Vec<(&'static str, tokio_postgres::Client)>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<BTreeSet<String>> {
    tokio::spawn(async move {
        let mut seen = BTreeSet::new();
        while !stop.load(Ordering::Relaxed) {
            for (label, client) in &clients {
                let Ok(rows) = client
                    .query(
                        "SELECT concat_ws(' | ', usename, application_name, client_addr::text, \
                         backend_type, query) FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
                        &[],
                    )
                    .await
                else {
                    continue;
                };
                for r in rows {
                    let line: Option<String> = r.get(0);
                    seen.insert(format!("{label}: {}", line.unwrap_or_default()));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen
    })
}

/// Every regular file under `dir`, with its text.
fn files_under(dir: &Path) -> Vec<(PathBuf, String)> {
    common::files_under(dir)
        .into_iter()
        .map(|path| {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            (path, text)
        })
        .collect()
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_leak_through_any_command_channel_or_store() {
    skip_unless_available!(pglogical);
    let lab = Lab3::start(DATA).await;
    let secrets = Secrets::new();

    // The role on the source reaches the replica by replication.
    lab.source
        .execute(
            "postgres",
            &format!(
                "CREATE ROLE {ROLE} LOGIN SUPERUSER REPLICATION PASSWORD {}",
                sql_literal(&secrets.source)
            ),
        )
        .await
        .unwrap();
    lab.target
        .execute(
            "postgres",
            &format!(
                "CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD {}",
                sql_literal(&secrets.target)
            ),
        )
        .await
        .unwrap();
    lab.wait_replayed().await;
    for (cluster, db) in [
        (&lab.source, &lab.db),
        (&lab.replica, &lab.db),
        (&lab.target, &lab.target_db),
    ] {
        require_password(cluster, db).await;
    }
    assert_password_required(&lab.source, &lab.db, &secrets.source).await;
    assert_password_required(&lab.replica, &lab.db, &secrets.source).await;
    assert_password_required(&lab.target, &lab.target_db, &secrets.target).await;

    let tok = token();
    let work = std::env::temp_dir().join(format!("pgmig-secrets-{}-{tok}", std::process::id()));
    let private =
        std::env::temp_dir().join(format!("pgmig-secrets-pw-{}-{tok}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&private).unwrap();
    let mut h = Harness {
        lab,
        secrets,
        work,
        private,
        config: None,
        invocations: 0,
    };
    for which in [Passwords::Right, Passwords::Wrong] {
        let (spw, tpw) = h.passwords(which);
        let line = |c: &Cluster, pw: &str| {
            format!(
                "{}:{}:*:{ROLE}:{}\n",
                c.host(),
                c.port(),
                passfile_escape(pw)
            )
        };
        let path = h.passfile(which);
        std::fs::write(
            &path,
            format!(
                "# pgmig secrets test\n{}{}{}",
                line(&h.lab.source, &spw),
                line(&h.lab.replica, &spw),
                line(&h.lab.target, &tpw)
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    // The search is not vacuous: every form the test gives pgmig is
    // caught, and every needle occurs in some form.
    let forms = [
        std::fs::read_to_string(h.passfile(Passwords::Right)).unwrap(),
        Harness::kv(&h.lab.source, "x", &h.secrets.source),
        Harness::kv(&h.lab.target, "x", &h.secrets.target),
        Harness::url(&h.lab.target, "x", Some(&h.secrets.target)),
        Harness::url_query(&h.lab.target, "x", &h.secrets.target),
    ];
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let caught = forms
        .iter()
        .filter(|form| std::panic::catch_unwind(|| h.secrets.assert_absent("", form)).is_err())
        .count();
    std::panic::set_hook(hook);
    assert_eq!(
        caught,
        forms.len(),
        "a form of a password is not searched for"
    );
    for needle in &h.secrets.needles {
        assert!(
            forms.iter().any(|f| f.contains(needle.as_str())),
            "needle never given"
        );
    }

    // The replica's walreceiver logs in as mig with the source's password,
    // as a production standby would.
    h.lab
        .replica
        .execute(
            &h.lab.db,
            &format!(
                "ALTER SYSTEM SET primary_conninfo = {}",
                sql_literal(&format!(
                    "host={} port={} user={ROLE} password={} application_name=maintenance",
                    h.lab.source.host(),
                    h.lab.source.port(),
                    conninfo_quote(&h.secrets.source)
                ))
            ),
        )
        .await
        .unwrap();
    h.lab
        .replica
        .execute(&h.lab.db, "SELECT pg_reload_conf()")
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while h
        .lab
        .source
        .query_opt_string(
            "postgres",
            &format!(
                "SELECT usename FROM pg_stat_replication WHERE usename = '{ROLE}' AND state = 'streaming'"
            ),
        )
        .await
        .unwrap()
        .is_none()
    {
        assert!(Instant::now() < deadline, "the replica does not stream as {ROLE}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.lab.wait_replayed().await;
    // Every statement pgmig sends, with its bound parameters, goes to the
    // server logs, which are searched at the end.
    for (cluster, db) in [
        (&h.lab.source, &h.lab.db),
        (&h.lab.replica, &h.lab.db),
        (&h.lab.target, &h.lab.target_db),
    ] {
        for sql in [
            "ALTER SYSTEM SET log_statement = 'all'",
            "SELECT pg_reload_conf()",
        ] {
            cluster.execute(db, sql).await.unwrap();
        }
    }

    // From here on: the test's own setup above is in the logs too (the
    // server logs a changed primary_conninfo in full).
    let log_offsets: Vec<u64> = [&h.lab.source, &h.lab.replica, &h.lab.target]
        .iter()
        .map(|c| std::fs::metadata(c.log_file()).unwrap().len())
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let activity = watch_activity(
        vec![
            ("source", h.lab.source.connect(&h.lab.db).await.unwrap()),
            ("replica", h.lab.replica.connect(&h.lab.db).await.unwrap()),
            (
                "target",
                h.lab.target.connect(&h.lab.target_db).await.unwrap(),
            ),
        ],
        stop.clone(),
    );

    // Phase I, every command over every channel.
    let plan = h.work.join("plan.toml");
    let plan_arg = plan.to_string_lossy().into_owned();
    let dms = h.work.join("dms");
    let dms_arg = dms.to_string_lossy().into_owned();
    h.everywhere(0, &["check", "--slots", "2"], 0).await;
    h.everywhere(1, &["plan", "--slots", "2", "--write", &plan_arg], 0)
        .await;
    assert!(plan.is_file(), "plan --write wrote nothing");
    h.config = Some(plan.clone());
    h.everywhere(2, &["lsn", "compare", "0/16B3748", "0/16B3750"], 0)
        .await;
    h.everywhere(3, &["check", "--help"], 0).await;
    // A connection string given where clap does not expect one: clap's
    // error quotes it.
    for (channel, mode) in COMBOS {
        let conns = h.conns(channel, mode, Passwords::Right);
        for args in [
            vec!["check", conns.target.as_str()],
            vec!["--sourc", conns.source.as_str(), "check"],
            vec![conns.target.as_str()],
        ] {
            let out = h.invoke_with(channel, mode, &conns, &args).await;
            assert_eq!(
                out.status.code(),
                Some(2),
                "{}",
                masked(&h.secrets, &text(&out))
            );
        }
    }
    h.everywhere(3, &["--dry-run", "run"], 0).await;
    h.everywhere(4, &["setup", "--yes"], 0).await;
    h.everywhere(5, &["snapshot"], 0).await;
    h.everywhere(6, &["schema", "--no-owner"], 0).await;
    h.everywhere(7, &["load", "--jobs", "2"], 0).await;
    h.everywhere(0, &["verify"], 0).await;
    h.everywhere(
        1,
        &[
            "dms",
            "generate",
            "--out",
            &dms_arg,
            "--replication-instance-arn",
            ARN,
        ],
        0,
    )
    .await;
    h.everywhere(2, &["status"], 0).await;
    h.everywhere(3, &["resume-replica"], 0).await;

    // Phase II: changes on the source, carried by CDC, then the cutover.
    h.lab.source.execute(&h.lab.db, WRITES).await.unwrap();
    h.everywhere(4, &["cdc", "--until-caught-up"], 0).await;
    let cutovers = h.everywhere(5, &["cutover"], 0).await;
    for cut in &cutovers {
        let out = String::from_utf8_lossy(&cut.stdout);
        let go = out.starts_with("GO") || out.contains("\nGO: ");
        let go_json = serde_json::from_str::<serde_json::Value>(&out)
            .is_ok_and(|v| v["go"] == serde_json::Value::Bool(true));
        assert!(go || go_json, "{out}");
    }
    h.everywhere(6, &["status"], 0).await;
    h.everywhere(7, &["--dry-run", "cleanup"], 0).await;

    // A node DSN with a password is refused, without quoting it.
    for (channel, mode) in COMBOS {
        let conns = h.conns(channel, mode, Passwords::Right);
        let node_dsn = Harness::kv(&h.lab.source, &h.lab.db, &h.secrets.target);
        let node_url = Harness::url(&h.lab.source, &h.lab.db, Some(&h.secrets.target));
        for dsn in [node_dsn, node_url] {
            let out = h
                .invoke_with(
                    channel,
                    mode,
                    &conns,
                    &["setup", "--yes", "--recreate-node", "--node-dsn", &dsn],
                )
                .await;
            assert_eq!(
                out.status.code(),
                Some(2),
                "{}",
                masked(&h.secrets, &text(&out))
            );
        }
    }

    // A config file written by hand with the passwords in its DSNs works
    // and is never quoted, nor when it is broken.
    let plan_config = h.config.take();
    let plan_text = std::fs::read_to_string(&plan).unwrap();
    // From the first table header of the plan on (`[plan]`, `[[plan.slots]]`, …).
    let plan_section = &plan_text[plan_text
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .find(|&i| plan_text[i..].trim_start_matches('[').starts_with("plan"))
        .expect("the plan in the config")..];
    let sections = format!(
        "[source]\ndsn = '''{}'''\n[replica]\ndsn = '''{}'''\n[target]\ndsn = '''{}'''\n",
        Harness::kv(&h.lab.source, &h.lab.db, &h.secrets.source),
        Harness::url(&h.lab.replica, &h.lab.db, Some(&h.secrets.source)),
        Harness::kv(&h.lab.target, &h.lab.target_db, &h.secrets.target),
    );
    let no_flags = Conns {
        source: String::new(),
        replica: String::new(),
        target: String::new(),
        env: vec![],
    };
    for (name, text_, code) in [
        ("hand.toml", format!("{sections}{plan_section}"), 0),
        (
            "unknown-key.toml",
            format!(
                "{sections}sslpassword = '''{}'''\n{plan_section}",
                h.secrets.target
            ),
            2,
        ),
        (
            "syntax.toml",
            format!(
                "{sections}[extra]\ndsn = \"host=h password={} \n{plan_section}",
                h.secrets.target
            ),
            2,
        ),
    ] {
        let path = h.private.join(name);
        std::fs::write(&path, text_).unwrap();
        h.config = Some(path);
        for args in [
            &["status"][..],
            &["verify", "--against", "source", "--mode", "counts"],
        ] {
            let out = h
                .invoke_with(Channel::Passfile, Mode::JsonTrace, &no_flags, args)
                .await;
            assert_eq!(
                out.status.code(),
                Some(code),
                "{name} {args:?}: {}",
                masked(&h.secrets, &text(&out))
            );
        }
    }
    h.config = plan_config;

    // Failures: a wrong password on every channel is refused by the server.
    for (channel, mode) in COMBOS {
        let out = h
            .invoke(
                channel,
                mode,
                Passwords::Wrong,
                &["verify", "--against", "source"],
            )
            .await;
        assert_ne!(out.status.code(), Some(0), "{channel:?}/{mode:?}");
        assert!(
            text(&out).contains("password authentication failed"),
            "{channel:?}/{mode:?}: {}",
            masked(&h.secrets, &text(&out))
        );
    }
    // A passfile others may read is ignored, with a warning that quotes
    // nothing of it.
    let open = h.private.join("pgpass-open");
    std::fs::copy(h.passfile(Passwords::Right), &open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    for mode in [Mode::VerboseText, Mode::JsonTrace] {
        let mut conns = h.conns(Channel::Passfile, mode, Passwords::Right);
        conns.env = vec![("PGPASSFILE", open.to_string_lossy().into_owned())];
        let out = h
            .invoke_with(
                Channel::Dsn,
                mode,
                &conns,
                &["verify", "--against", "source"],
            )
            .await;
        assert_ne!(out.status.code(), Some(0), "{mode:?}");
        assert!(
            text(&out).contains("ignoring the password file"),
            "{mode:?}: {}",
            masked(&h.secrets, &text(&out))
        );
    }

    // An unreachable host, with each password in the string or the URL.
    let port = closed_port();
    for mode in [Mode::VerboseText, Mode::JsonTrace] {
        for (source, target) in [
            (
                format!(
                    "host=127.0.0.1 port={port} user={ROLE} dbname=app password={}",
                    conninfo_quote(&h.secrets.source)
                ),
                Harness::kv(&h.lab.target, &h.lab.target_db, &h.secrets.target),
            ),
            (
                Harness::url(&h.lab.source, &h.lab.db, Some(&h.secrets.source)),
                format!(
                    "postgres://{ROLE}:{}@127.0.0.1:{port}/target",
                    percent_encode(&h.secrets.target)
                ),
            ),
            (
                format!(
                    "host=no-such-host.invalid connect_timeout=5 user={ROLE} dbname=app password={}",
                    conninfo_quote(&h.secrets.source)
                ),
                Harness::url(&h.lab.target, &h.lab.target_db, Some(&h.secrets.target)),
            ),
        ] {
            let conns = Conns {
                replica: source.clone(),
                source,
                target,
                env: vec![],
            };
            for args in [
                &["status"][..],
                &["verify", "--against", "source"],
                &["cdc", "--until-caught-up", "--reconnect-timeout", "2"],
            ] {
                let out = h.invoke_with(Channel::Dsn, mode, &conns, args).await;
                if args[0] != "status" {
                    assert_ne!(out.status.code(), Some(0), "{args:?} {mode:?}");
                }
            }
        }
        // Malformed strings that hold a password: a usage error.
        for bad in [
            format!(
                "host=127.0.0.1 port=notaport user={ROLE} password={}",
                conninfo_quote(&h.secrets.target)
            ),
            // The quote never closed.
            format!(
                "host=127.0.0.1 port=5432 user={ROLE} dbname=x password={}",
                conninfo_quote(&h.secrets.target).trim_end_matches('\'')
            ),
            format!(
                "postgres://{ROLE}:{}@127.0.0.1:notaport/db",
                percent_encode(&h.secrets.target)
            ),
            format!("postgres://{ROLE}:{}@127.0.0.1/db", h.secrets.target),
            // Unquoted, so the space splits it.
            format!(
                "host=127.0.0.1 user={ROLE} password={} dbname=x",
                h.secrets.target
            ),
            format!(
                "host=127.0.0.1 user={ROLE} password={} sslmode=bogus",
                conninfo_quote(&h.secrets.target)
            ),
            format!(
                "host=127.0.0.1 user={ROLE} sslpassword={} sslkey=/nonexistent",
                conninfo_quote(&h.secrets.target)
            ),
            format!(
                "postgres://{ROLE}@127.0.0.1/db?sslmode=require&password={}&bogus=1",
                percent_encode(&h.secrets.target)
            ),
        ] {
            let mut conns = h.conns(Channel::Dsn, mode, Passwords::Right);
            conns.target = bad;
            let out = h
                .invoke_with(
                    Channel::Dsn,
                    mode,
                    &conns,
                    &["verify", "--against", "source"],
                )
                .await;
            assert_eq!(
                out.status.code(),
                Some(2),
                "{}",
                masked(&h.secrets, &text(&out))
            );
        }
    }
    // The stores pgmig writes into or leaves behind.
    stop.store(true, Ordering::Relaxed);
    let activity = activity.await.expect("pg_stat_activity sampler");
    let lab = &h.lab;
    let (pgmig_rows, n) = dump_schema(&lab.target, &lab.target_db, "pgmig").await;
    assert!(n > 0, "the target's pgmig schema is empty");
    h.secrets
        .assert_absent("the target's pgmig schema", &pgmig_rows);
    let (pglogical_rows, n) = dump_schema(&lab.source, &lab.db, "pglogical").await;
    assert!(n > 0, "pglogical's catalog is empty");
    h.secrets
        .assert_absent("pglogical's catalog on the source", &pglogical_rows);
    let node_dsn = lab
        .source_sql("SELECT string_agg(if_dsn, ' ; ') FROM pglogical.node_interface")
        .await;
    assert!(
        node_dsn.contains(&format!("user={ROLE}")) && !node_dsn.contains("password"),
        "{}",
        masked(&h.secrets, &node_dsn)
    );
    let names = lab
        .source_sql(
            "SELECT concat_ws(' ; ', \
               (SELECT string_agg(concat_ws(' ', slot_name, plugin, database), ', ') FROM pg_replication_slots), \
               (SELECT string_agg(set_name, ', ') FROM pglogical.replication_set), \
               (SELECT string_agg(node_name, ', ') FROM pglogical.node))",
        )
        .await;
    assert!(names.contains("dms_slot_01"), "{names}");
    h.secrets
        .assert_absent("slot, set and node names on the source", &names);
    let activity: Vec<String> = activity.into_iter().collect();
    assert!(
        activity
            .iter()
            .any(|l| l.contains(&format!("{ROLE} | pgmig "))),
        "pgmig's sessions were never seen in pg_stat_activity:\n{}",
        masked(&h.secrets, &activity.join("\n"))
    );
    h.secrets
        .assert_absent("pg_stat_activity", &activity.join("\n"));
    for (cluster, offset) in [&lab.source, &lab.replica, &lab.target]
        .into_iter()
        .zip(log_offsets)
    {
        let bytes = std::fs::read(cluster.log_file()).unwrap();
        let log = String::from_utf8_lossy(&bytes[offset as usize..]).into_owned();
        assert!(
            log.contains("statement: ") || log.contains("execute "),
            "{}: log_statement did not take",
            cluster.label()
        );
        h.secrets
            .assert_absent(&format!("the server log of {}", cluster.label()), &log);
    }
    let files = files_under(&h.work);
    let names: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
    assert!(
        files.iter().any(|(p, _)| p.ends_with("plan.toml"))
            && files.iter().any(|(p, _)| p.starts_with(&dms)),
        "{names:#?}"
    );
    assert!(files.len() > 3, "{names:#?}");
    for (path, content) in &files {
        h.secrets
            .assert_absent(&format!("the file {}", path.display()), content);
        h.secrets.assert_absent(
            "the name of a file pgmig wrote",
            &path.display().to_string(),
        );
    }
    eprintln!(
        "{} invocations; {} files, {} pg_stat_activity lines, {} pgmig rows searched",
        h.invocations,
        files.len(),
        activity.len(),
        pgmig_rows.lines().count()
    );

    // And the migration itself succeeded.
    for table in TABLES {
        lab.assert_source_equals_target(table).await;
    }
}

//! A real ClickHouse server (Debian's `clickhouse-server`, 18.16) for the tests,
//! run from a temporary directory on loopback ports.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Child, free_port};

/// A ClickHouse server's files and port; `start` runs it (again, on the same data).
pub struct ClickHouse {
    pub dir: std::path::PathBuf,
    pub port: u16,
}

impl ClickHouse {
    pub fn new(dir: &std::path::Path) -> ClickHouse {
        let (port, tcp) = (free_port(), free_port());
        let d = dir.display();
        std::fs::write(
            dir.join("config.xml"),
            format!(
                r#"<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog></logger>
    <http_port>{port}</http_port>
    <tcp_port>{tcp}</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <user_files_path>{d}/user_files/</user_files_path>
    <format_schema_path>{d}/format_schemas/</format_schema_path>
    <users_config>{d}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>268435456</mark_cache_size>
    <max_concurrent_queries>50</max_concurrent_queries>
</yandex>
"#
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("users.xml"),
            r#"<?xml version="1.0"?>
<yandex>
    <profiles><default></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default></default></quotas>
</yandex>
"#,
        )
        .unwrap();
        ClickHouse { dir: dir.to_path_buf(), port }
    }

    pub fn start(&self) -> Child {
        let bin = ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server", "/usr/bin/clickhouse"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or_else(|| panic!("clickhouse-server is not installed: run scripts/test-deps.sh as root (apt-get install clickhouse-server)"));
        let mut cmd = Command::new(bin);
        if bin.ends_with("/clickhouse") {
            cmd.arg("server");
        }
        let child = cmd
            .arg(format!("--config-file={}", self.dir.join("config.xml").display()))
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.query("SELECT 1").as_deref() != Some("1") {
            assert!(
                Instant::now() < deadline,
                "ClickHouse did not start: {}",
                std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Child(child)
    }

    /// A query's answer (TSV, trimmed), or `None` when the server does not answer.
    pub fn query(&self, q: &str) -> Option<String> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--data-binary", q])
            .arg(format!("http://127.0.0.1:{}/", self.port))
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn number(&self, q: &str) -> f64 {
        let a = self.query(q).unwrap_or_else(|| panic!("{q}: no answer"));
        a.parse().unwrap_or_else(|_| panic!("{q}: {a}"))
    }

    pub fn url(&self, table: &str) -> String {
        format!("clickhouse://127.0.0.1:{}/default?table={table}", self.port)
    }
}

/// `tokentop ship --no-follow --create-table` of `file` into the table at `url`,
/// spooling in `spool`; what ship said if it failed.
pub fn ship_file(url: &str, file: &std::path::Path, spool: &std::path::Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_tokentop"))
        .args(["ship", "--no-follow", "--create-table", "--spool"])
        .args([spool, std::path::Path::new("--to"), std::path::Path::new(url), file])
        .output()
        .unwrap();
    assert!(out.status.success(), "ship: {}", String::from_utf8_lossy(&out.stderr));
}

/// A server in `dir` holding a day of calls in table `calls`: 12,000 demo calls over
/// the last 22 hours (about nine a minute, the demo's incidents every ten minutes),
/// shipped from `dir/day.jsonl`, rollup filled. The server runs while the `Child` lives.
pub fn a_day_shipped(dir: &std::path::Path) -> (ClickHouse, Child, std::path::PathBuf) {
    let ch = ClickHouse::new(dir);
    let server = ch.start();
    let file = dir.join("day.jsonl");
    let demo = Command::new(env!("CARGO_BIN_EXE_tokentop"))
        .args(["demo", "--count", "12000", "--fast", "--rate", "0.15"])
        .output()
        .unwrap();
    std::fs::write(&file, demo.stdout).unwrap();
    ship_file(&ch.url("calls"), &file, &dir.join("spool"));
    (ch, server, file)
}

/// Current ClickHouse (chDB 26.x, from PyPI) behind `tests/python/chdb_http.py`,
/// the part of ClickHouse's HTTP interface tokentop uses, on a loopback port.
pub struct ChDb {
    pub port: u16,
    _process: Child,
}

impl ChDb {
    pub fn start(dir: &std::path::Path) -> ChDb {
        let port = free_port();
        let mut child = Command::new(super::python())
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/chdb_http.py"))
            .arg(dir)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut first).unwrap();
        assert_eq!(
            first.trim(),
            "listening",
            "chdb_http.py did not start (is chdb-core in .venv-test? run scripts/test-deps.sh)"
        );
        ChDb { port, _process: Child(child) }
    }

    /// Runs a statement; its answer (trimmed). Panics with ClickHouse's message on an error.
    pub fn run(&self, sql: &str) -> String {
        self.post("", sql.as_bytes())
    }

    /// Sends rows for `INSERT ... FORMAT F` (in the URL) in the body.
    pub fn insert(&self, statement: &str, rows: &[u8]) -> String {
        let q: String = statement
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        self.post(&format!("?query={q}"), rows)
    }

    fn post(&self, query: &str, body: &[u8]) -> String {
        let path = std::env::temp_dir().join(format!("chdb-body-{}-{}", std::process::id(), self.port));
        std::fs::write(&path, body).unwrap();
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "60", "--data-binary"])
            .arg(format!("@{}", path.display()))
            .args(["-w", "\n%{http_code}"])
            .arg(format!("http://127.0.0.1:{}/{query}", self.port))
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (answer, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
        assert_eq!(code, "200", "{answer}");
        answer.trim().to_string()
    }

    pub fn url(&self, table: &str) -> String {
        format!("clickhouse://127.0.0.1:{}/default?table={table}", self.port)
    }
}

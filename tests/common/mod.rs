//! Helpers shared by the end-to-end tests.

#![allow(dead_code)]

pub mod clickhouse;

/// Requests received: (head, body).
pub type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// A real HTTP receiver on loopback: answers the first `fail` requests with 500 and the
/// rest with 200 (or never answers, with `hang`), recording each request.
pub fn receiver(fail: usize, hang: bool) -> (String, Received) {
    use std::io::{BufRead, BufReader, Read, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let (mut head, mut line, mut len) = (String::new(), String::new(), 0usize);
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
                line.clear();
            }
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body).unwrap_or_default();
            log.lock().unwrap().push((head, body));
            if hang {
                // Keep the connection open, answering nothing, and take the next one.
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_secs(30));
                    drop(conn);
                });
                continue;
            }
            let status = if i < fail { "500 Internal Server Error" } else { "200 OK" };
            let _ = write!(conn, "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, seen)
}

/// A real HTTP server on loopback that answers every request with `status` and
/// `headers` (each ending in CRLF); returns its address (`127.0.0.1:PORT`).
pub fn answering(status: &'static str, headers: &'static str) -> String {
    use std::io::{BufRead, BufReader, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let _ = write!(conn, "HTTP/1.1 {status}\r\n{headers}content-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    addr
}

/// A real HTTP server on loopback that answers every request with a redirect
/// (`302 Found`, to another path of its own).
pub fn redirector() -> String {
    format!("http://{}/hook", answering("302 Found", "location: /elsewhere\r\n"))
}

/// A native event with request id `r{i}`.
pub fn event(i: u64) -> String {
    format!(r#"{{"created_at":{},"model":"m","request_id":"r{i}"}}"#, 1_740_000_000_000u64 + i)
}

/// The request ids of native lines.
pub fn ids(lines: &[u8]) -> Vec<String> {
    lines
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            v["request_id"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Appends to a file, creating it when missing (as a gateway writing its log).
pub fn append(path: &std::path::Path, text: &str) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A running `tokentop serve`, killed (SIGKILL) when dropped; its stderr is collected.
pub struct Relay {
    pub child: std::process::Child,
    pub url: String,
    pub stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tokentop serve` through `sh -c` (so a test can set limits first) and waits
/// until it listens.
// The child is waited for in `Relay::drop`.
#[allow(clippy::zombie_processes)]
pub fn relay_with(shell_prefix: &str, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Relay {
    use std::io::BufRead as _;
    let bin = env!("CARGO_BIN_EXE_tokentop");
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let script = format!("{shell_prefix} exec '{bin}' serve --listen {listen} {}", quoted.join(" "));
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(script).stderr(std::process::Stdio::piped()).stdout(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut line = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line).unwrap_or(0) == 0 {
            let status = child.wait();
            panic!("the relay exited: {status:?}");
        }
        stderr.lock().unwrap().push(line.trim().to_string());
        if let Some(url) = line.trim().strip_prefix("tokentop: relaying on ") {
            let url = url.to_string();
            let log = stderr.clone();
            std::thread::spawn(move || {
                for l in err.lines().map_while(Result::ok) {
                    log.lock().unwrap().push(l);
                }
            });
            return Relay { child, url, stderr };
        }
    }
}

/// The Python with the test's PyPI packages (OpenTelemetry SDK and exporters, OpenAI and
/// Anthropic SDKs): `TOKENTOP_TEST_PYTHON`, or the venv `scripts/test-deps.sh` makes.
/// Missing, the test fails and says how to make it.
pub fn python() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("TOKENTOP_TEST_PYTHON") {
        return p.into();
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/test-deps.sh (it makes the venv with the Python SDKs these tests drive)",
        venv.display()
    );
    venv
}

/// Waits until a relay's stderr has a line containing `what` and gives the text after it.
pub fn wait_for_log(relay: &Relay, what: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(l) = relay.stderr.lock().unwrap().iter().find(|l| l.contains(what)) {
            return l[l.find(what).unwrap() + what.len()..].trim().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no `{what}` in {:?}", relay.stderr.lock().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A child process, killed (SIGKILL) and waited for when dropped.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free on loopback now (another process may take it before it is used; the
/// tests that use it start their server at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

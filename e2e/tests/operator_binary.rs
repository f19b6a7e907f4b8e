//! The real `winky-operator` binary: --help, and its endpoints while it
//! reconciles an App applied with kubectl.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use winky_e2e::{Component, ControlPlane, metric_value, operator_binary};

/// A plain HTTP/1.0 GET: (status code, body).
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn help_teaches_every_flag() {
    let out = std::process::Command::new(operator_binary().unwrap())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--kubeconfig",
        "--namespace",
        "--metrics-addr",
        "--log-format",
        "--concurrency",
        "--leader-elect",
        "--lease-namespace",
        "--identity",
        "--vault-addr",
        "--engine",
        "--emulator-concurrency",
    ] {
        assert!(help.contains(flag), "{flag} is not in --help:\n{help}");
    }
    assert!(help.contains("Examples:"), "{help}");
}

#[test]
fn serves_metrics_and_health_while_reconciling() {
    let cp = ControlPlane::shared();
    cp.kubectl(&["create", "namespace", "binary"]).unwrap();
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let operator = Component::spawn(
        "winky-operator-binary",
        &operator_binary().unwrap(),
        &[
            format!("--kubeconfig={}", cp.kubeconfig().display()),
            "--namespace=binary".into(),
            format!("--metrics-addr={addr}"),
            "--log-format=json".into(),
        ],
        cp.dir(),
        None,
    )
    .unwrap();

    let (code, body) = wait_for("/healthz", Duration::from_secs(20), || {
        http_get(addr, "/healthz").ok()
    });
    assert_eq!((code, body.as_str()), (200, "ok"));
    wait_for("/readyz to answer 200", Duration::from_secs(20), || {
        http_get(addr, "/readyz").ok().filter(|(code, _)| *code == 200)
    });

    let app = winky_e2e::workspace_root().join("e2e/tests/binary-app.yaml");
    cp.kubectl(&["apply", "-n", "binary", "-f", &app.display().to_string()])
        .unwrap();
    cp.kubectl(&[
        "wait",
        "-n",
        "binary",
        "--for=condition=Progressing",
        "--timeout=20s",
        "apps.winky.dev/hello",
    ])
    .unwrap_or_else(|e| panic!("{e:#}\noperator log:\n{}", operator.log_tail(30)));

    let (code, metrics) = http_get(addr, "/metrics").unwrap();
    assert_eq!(code, 200);
    let sample = r#"winky_reconciles_total{controller="app",result="success"}"#;
    assert!(metric_value(&metrics, sample) >= 1.0, "{metrics}");
    assert_eq!(metric_value(&metrics, "winky_leader"), 1.0, "{metrics}");

    let log = std::fs::read_to_string(operator.log()).unwrap();
    let first = log.lines().next().unwrap_or_default();
    assert!(
        serde_json::from_str::<serde_json::Value>(first).is_ok(),
        "--log-format=json writes JSON lines: {first}"
    );
}

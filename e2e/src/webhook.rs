//! GitHub-shaped, signed webhook deliveries, as GitHub sends them: the real
//! example payloads vendored in `e2e/github/webhooks/` adjusted to the
//! repository and commits at hand, signed with HMAC-SHA256 over the raw body
//! (`X-Hub-Signature-256`), posted over plain HTTP/1.1 on loopback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::workspace_root;

/// A vendored example payload by file name (`push-branch.json`).
pub fn example(name: &str) -> Value {
    let path = workspace_root().join("e2e/github/webhooks").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The body of a `push` of `branch` from `before` to `after` in `owner/repo`,
/// from GitHub's own example.
pub fn push_payload(full_name: &str, branch: &str, before: &str, after: &str) -> Vec<u8> {
    let mut payload = example("push-branch.json");
    let (owner, name) = full_name.split_once('/').unwrap_or((full_name, full_name));
    payload["ref"] = json!(format!("refs/heads/{branch}"));
    payload["before"] = json!(before);
    payload["after"] = json!(after);
    payload["created"] = json!(before.bytes().all(|b| b == b'0'));
    payload["repository"]["name"] = json!(name);
    payload["repository"]["full_name"] = json!(full_name);
    payload["repository"]["owner"]["login"] = json!(owner);
    payload["repository"]["default_branch"] = json!(branch);
    payload["repository"]["master_branch"] = json!(branch);
    payload["head_commit"]["id"] = json!(after);
    if let Some(commits) = payload["commits"].as_array_mut() {
        for commit in commits {
            commit["id"] = json!(after);
        }
    }
    serde_json::to_vec(&payload).expect("JSON serializes")
}

/// `sha256=<hex>` of `body` under `secret`, as GitHub signs.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// A delivery id in GitHub's form (a UUID), random.
pub fn delivery_id() -> String {
    let bytes: [u8; 16] = rand_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn rand_bytes() -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut file = std::fs::File::open("/dev/urandom").expect("/dev/urandom exists");
    file.read_exact(&mut out).expect("/dev/urandom reads");
    out
}

/// The answer to a delivery: status code and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// POSTs `body` to `url` (`http://127.0.0.1:PORT/path`) with `headers`.
pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Answer> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs on loopback")?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let mut stream = TcpStream::connect(authority).with_context(|| format!("connecting to {authority}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: GitHub-Hookshot/winky-dev\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    // The server may answer (413) before reading all of a large body.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok(Answer { status, body })
}

/// Sends a signed `event` delivery of `body` to `url` with `secret`.
pub fn deliver(url: &str, secret: &[u8], event: &str, body: &[u8]) -> Result<Answer> {
    let id = delivery_id();
    let signature = signature(secret, body);
    post(
        url,
        &[
            ("X-GitHub-Event", event),
            ("X-GitHub-Delivery", &id),
            ("X-Hub-Signature-256", &signature),
        ],
        body,
    )
}

/// `winky-dev hook`: what a `post-receive` hook runs. Reads git's
/// `<old> <new> <ref>` lines and delivers one signed `push` per branch.
pub fn deliver_pushes(url: &str, secret: &[u8], full_name: &str, stdin: &str) -> Result<Vec<Answer>> {
    let mut answers = Vec::new();
    for line in stdin.lines() {
        let mut parts = line.split_whitespace();
        let (Some(old), Some(new), Some(refname)) = (parts.next(), parts.next(), parts.next()) else {
            bail!("not a post-receive line: {line:?}");
        };
        let Some(branch) = refname.strip_prefix("refs/heads/") else {
            continue;
        };
        answers.push(deliver(
            url,
            secret,
            "push",
            &push_payload(full_name, branch, old, new),
        )?);
    }
    Ok(answers)
}

/// What a `pull_request` delivery says about its pull request.
#[derive(Clone, Debug)]
pub struct PullRequestEvent<'a> {
    /// `opened`, `synchronize`, …
    pub action: &'a str,
    pub number: u64,
    /// Who opened it (and sent the event).
    pub author: &'a str,
    pub head_ref: &'a str,
    pub head_sha: &'a str,
    pub base_ref: &'a str,
}

/// The body of a `pull_request` delivery in `owner/repo`, from GitHub's own example.
pub fn pull_request_payload(full_name: &str, pr: &PullRequestEvent<'_>) -> Vec<u8> {
    let mut payload = example("pull_request-opened.json");
    let (owner, name) = full_name.split_once('/').unwrap_or((full_name, full_name));
    payload["action"] = json!(pr.action);
    payload["number"] = json!(pr.number);
    payload["repository"]["name"] = json!(name);
    payload["repository"]["full_name"] = json!(full_name);
    payload["repository"]["owner"]["login"] = json!(owner);
    payload["sender"]["login"] = json!(pr.author);
    let pull = &mut payload["pull_request"];
    pull["number"] = json!(pr.number);
    pull["user"]["login"] = json!(pr.author);
    pull["head"]["ref"] = json!(pr.head_ref);
    pull["head"]["sha"] = json!(pr.head_sha);
    pull["head"]["label"] = json!(format!("{owner}:{}", pr.head_ref));
    pull["base"]["ref"] = json!(pr.base_ref);
    pull["base"]["label"] = json!(format!("{owner}:{}", pr.base_ref));
    serde_json::to_vec(&payload).expect("JSON serializes")
}

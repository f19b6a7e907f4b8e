//! The local GitHub of `winky-dev up`, end to end with the real binaries: the
//! examples reach `main` through a pull request, a straight push to `main` is
//! refused, an agent's pull request merged by a person with `winky-dev github
//! merge` is applied and waits in staging, `/approve` from someone the
//! default policy does not name is answered and changes nothing, an approver's
//! `/approve` and `/promote staging` written with `winky-dev github comment`
//! promote it, and the operator's replies are on the pull request. Stopped,
//! the double reports no schema problem and panics not; started again, the
//! pull requests are back and the merged head is applied again.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use winky_e2e::git::git;

const WAIT: Duration = Duration::from_secs(90);
const AGENT: &str = "winky-agent[bot]";

/// `winky-dev up DIR`, stopped (SIGTERM, as `make down`) when dropped.
struct Up {
    child: Option<Child>,
}

impl Up {
    fn start(dir: &Path) -> Up {
        let _ = std::fs::remove_file(dir.join("ready"));
        let log = std::fs::File::create(dir.join("up.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_winky-dev"))
            .arg("up")
            .arg(dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut up = Up { child: Some(child) };
        wait("winky-dev up to be ready", Duration::from_secs(240), || {
            if let Some(status) = up.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "winky-dev up exited ({status}):\n{}",
                    std::fs::read_to_string(dir.join("up.log")).unwrap_or_default()
                );
            }
            dir.join("ready").is_file().then_some(())
        });
        up
    }

    /// SIGTERM, then its exit status once it has stopped everything.
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

fn wait<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `winky-dev github ARGS…`: its output; it must succeed.
fn github(dir: &Path, args: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_winky-dev"));
    command.arg("github").arg(args[0]).arg(dir).args(&args[1..]);
    let output = command.stdin(Stdio::null()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "winky-dev github {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `kubectl get … -o jsonpath=PATH` against the dev control plane; empty when absent.
fn get(dir: &Path, what: &[&str], path: &str) -> String {
    let output = Command::new(dir.join("kubectl"))
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("get")
        .args(what)
        .arg(format!("-o=jsonpath={path}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn source(dir: &Path, path: &str) -> String {
    get(dir, &["gitsource", "examples", "-n", "winky-system"], path)
}

fn promotion(dir: &Path, stage: &str, revision: &str, path: &str) -> String {
    get(
        dir,
        &["promotion", &format!("notes-{stage}-{revision}"), "-n", "notes"],
        path,
    )
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .unwrap()
        .trim()
        .to_string()
}

fn main_head(dir: &Path) -> String {
    let remote = git(dir, &["ls-remote", &read(dir, "git-url"), "refs/heads/main"]).unwrap();
    remote.split_whitespace().next().unwrap().to_string()
}

fn applied(dir: &Path, commit: &str) {
    wait(&format!("{commit} applied"), WAIT, || {
        (source(dir, "{.status.lastAppliedCommit}") == commit).then_some(())
    });
}

/// The body of the operator's reply to comment `id` on pull request `pr`, once posted.
fn reply(dir: &Path, pr: &str, id: &str) -> String {
    let marker = format!("<!-- winky:reply:{id} -->");
    wait(&format!("a reply to comment {id}"), WAIT, || {
        let comments = github(dir, &["comments", pr]);
        let reply = comments.split("── ").find(|c| c.contains(&marker))?;
        Some(reply.to_string())
    })
}

/// `login` comments `body` on `pr` with `winky-dev github comment`; its id.
fn comment(dir: &Path, pr: &str, login: &str, body: &str) -> String {
    let said = github(dir, &["comment", pr, "--as", login, body]);
    assert!(said.contains("issue_comment webhook: 202"), "{said}");
    said.split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn a_local_pull_request_is_merged_approved_and_promoted_with_winky_dev_github() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("dev");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    let mut up = Up::start(&dir);

    // The GitSource names the local GitHub; the examples came through #1.
    let url = read(&dir, "github-url");
    assert_eq!(source(&dir, "{.spec.github.apiUrl}"), url);
    assert_eq!(
        source(&dir, "{.spec.github.owner}/{.spec.github.repo}"),
        "local/examples"
    );
    let first = main_head(&dir);
    applied(&dir, &first);
    let pulls = github(&dir, &["pulls"]);
    assert!(
        pulls.contains("#1") && pulls.contains("merged by dana"),
        "{pulls}"
    );

    // A straight push to main: refused, the merge stays applied.
    let work = tmp.path().join("work");
    git(
        tmp.path(),
        &[
            "clone",
            "--quiet",
            &read(&dir, "git-url"),
            &work.display().to_string(),
        ],
    )
    .unwrap();
    std::fs::write(work.join("NOTES.md"), "pushed straight to main\n").unwrap();
    git(&work, &["add", "NOTES.md"]).unwrap();
    git(&work, &["commit", "--quiet", "-m", "docs: straight to main"]).unwrap();
    git(&work, &["push", "--quiet", "origin", "HEAD:main"]).unwrap();
    let direct = main_head(&dir);
    wait("the straight push refused", WAIT, || {
        let reasons = source(
            &dir,
            "{.status.lastAttemptedCommit} {.status.conditions[*].reason}",
        );
        (reasons.starts_with(&direct) && reasons.contains("NotMerged")).then_some(())
    });
    assert_eq!(source(&dir, "{.status.lastAppliedCommit}"), first);

    // An agent's branch, a pull request opened and merged by dana: applied.
    let branch = "winky/feat-notes-replicas-a1b2c3d4";
    git(&work, &["checkout", "--quiet", "-b", branch]).unwrap();
    let app = work.join("deploy/notes/app.yaml");
    let yaml = std::fs::read_to_string(&app).unwrap();
    assert!(yaml.contains("\n  replicas: 2\n"), "{yaml}");
    std::fs::write(&app, yaml.replace("\n  replicas: 2\n", "\n  replicas: 3\n")).unwrap();
    git(&work, &["commit", "--quiet", "-am", "feat(notes): 3 replicas"]).unwrap();
    git(&work, &["push", "--quiet", "origin", branch]).unwrap();
    let merged = github(
        &dir,
        &["merge", "--branch", branch, "--as", "dana", "--author", AGENT],
    );
    assert!(merged.contains("opened pull request #2"), "{merged}");
    assert!(merged.contains("merged pull request #2 into main"), "{merged}");
    assert!(merged.contains("winky webhook: 202"), "{merged}");
    let merge = main_head(&dir);
    assert!(merged.contains(&merge), "{merged}");
    applied(&dir, &merge);
    let app_get = |path: &str| get(&dir, &["app", "notes", "-n", "notes"], path);
    assert_eq!(app_get("{.spec.replicas}"), "3");
    let rev = wait("the merge's revision", WAIT, || {
        (app_get("{.status.revision.gitCommit}") == merge).then(|| app_get("{.status.revision.id}"))
    });
    assert_eq!(app_get("{.status.revision.pullRequest}"), "2");

    // Preview, then staging waits for an approval.
    wait("staging awaits approval", WAIT, || {
        (promotion(&dir, "staging", &rev, "{.status.phase}") == "AwaitingApproval").then_some(())
    });
    assert_eq!(promotion(&dir, "preview", &rev, "{.status.phase}"), "Promoted");
    let approvals = |state: &str| {
        promotion(
            &dir,
            "staging",
            &rev,
            "{.status.gates[?(@.name==\"approvals\")].state}",
        ) == state
    };
    assert!(approvals("Waiting"));

    // bob is no approver of the default policy here: answered, nothing moves.
    let bob = comment(&dir, "2", "bob", "/approve");
    let answer = reply(&dir, "2", &bob);
    assert!(
        answer.contains("@bob") && answer.contains("not eligible"),
        "{answer}"
    );
    assert!(approvals("Waiting"));
    assert_eq!(
        promotion(&dir, "staging", &rev, "{.status.phase}"),
        "AwaitingApproval"
    );

    // alice approves; staging is not autoPromote: carol's /promote moves it.
    let alice = comment(&dir, "2", "alice", "/approve");
    let answer = reply(&dir, "2", &alice);
    assert!(answer.contains("counted for staging"), "{answer}");
    wait("the approval counted", WAIT, || approvals("Passed").then_some(()));
    let carol = comment(&dir, "2", "carol", "/promote staging");
    wait("staging promoted", WAIT, || {
        (promotion(&dir, "staging", &rev, "{.status.phase}") == "Promoted").then_some(())
    });
    let answer = reply(&dir, "2", &carol);
    assert!(
        answer.contains(&format!("promoted {rev} into staging")),
        "{answer}"
    );
    let comments = github(&dir, &["comments", "2"]);
    assert!(comments.contains("winky-operator[bot]"), "{comments}");

    // Stopped as `make down` stops it: no panic, every request logged, none
    // breaking GitHub's schemas.
    let status = up.stop();
    assert!(
        status.success(),
        "winky-dev up exited {status}:\n{}",
        std::fs::read_to_string(dir.join("up.log")).unwrap_or_default()
    );
    let log = read(&dir, "github.log");
    assert!(
        log.contains("(repos/list-pull-requests-associated-with-commit)"),
        "{log}"
    );
    assert!(log.contains("(issues/create-comment)"), "{log}");
    assert!(!log.contains("SCHEMA PROBLEM"), "{log}");

    // Started again on the same directory: the pull requests are back, and
    // the head dana merged is applied on the new control plane.
    let _up = Up::start(&dir);
    let pulls = github(&dir, &["pulls"]);
    assert!(pulls.contains("#1") && pulls.contains("#2"), "{pulls}");
    assert_eq!(pulls.matches("merged by dana").count(), 2, "{pulls}");
    applied(&dir, &merge);
}

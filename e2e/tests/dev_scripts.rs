//! `hack/up.sh` and `hack/down.sh`, behind `make up` and `make down`, with
//! stand-ins for winky-dev and its components: no control plane needed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn script(name: &str) -> std::path::PathBuf {
    winky_e2e::workspace_root().join("hack").join(name)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `make up DEV=anything` leaves nothing for `git status` to show.
#[test]
fn up_makes_any_dev_directory_git_ignored() {
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q"]);
    // No target/debug/winky-dev here: up.sh starts nothing and says so, after
    // it has made the directory (and written its log and pid into it).
    let out = Command::new("bash")
        .arg(script("up.sh"))
        .arg("my-dev")
        .current_dir(repo.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let dev = repo.path().join("my-dev");
    assert!(dev.join("pid").exists(), "up.sh wrote into {}", dev.display());
    let status = git(repo.path(), &["status", "--porcelain", "--untracked-files=all"]);
    assert_eq!(status, "", "git sees what `make up DEV=my-dev` made");
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

/// etcd's command line does not name the dev directory (its data lives in
/// `$TMPDIR/winky-etcd-<stamp>-<pid of winky-dev>-<n>`): `make down` must wait for
/// it all the same, so that nothing is left behind when it returns.
#[test]
fn down_waits_for_etcd_to_exit() {
    let dev = tempfile::tempdir().unwrap();
    // winky-dev's stand-in; reaped as soon as it exits.
    let mut winky_dev = Command::new("sleep").arg("60").spawn().unwrap();
    let winky_dev_pid = winky_dev.id();
    let reaper = std::thread::spawn(move || winky_dev.wait());
    std::fs::write(dev.path().join("pid"), format!("{winky_dev_pid}\n")).unwrap();
    // etcd's stand-in: its command line as winky-dev starts it, taking 2 s to stop.
    let data = std::env::temp_dir().join(format!("winky-etcd-1796014593061-{winky_dev_pid}-0"));
    let mut etcd = Command::new("sh")
        .args(["-c", "sleep 2; :", "etcd"])
        .arg(format!("--data-dir={}", data.display()))
        .arg("--log-level=warn")
        .spawn()
        .unwrap();

    let started = Instant::now();
    let out = Command::new("bash")
        .arg(script("down.sh"))
        .arg(dev.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("down: stopped"), "{stdout}");
    assert!(
        etcd.try_wait().unwrap().is_some() || !alive(etcd.id()),
        "down.sh returned after {:?} with etcd still running",
        started.elapsed()
    );
    reaper.join().unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    let _ = etcd.kill();
    let _ = etcd.wait();
}

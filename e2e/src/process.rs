//! Child processes that cannot outlive the process that started them.
//!
//! Each component runs under a small `sh` wrapper that holds the read end of a
//! pipe (its stdin) whose write end only we hold. When we drop it — or exit, or
//! crash, or get killed — the pipe closes, the wrapper's `read` returns and it
//! stops the component. This needs no `unsafe` (no `PR_SET_PDEATHSIG`) and also
//! covers the per-test-binary control plane, which lives in a static that is
//! never dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// `$1` is the program, the rest its arguments. `WINKY_CLEANUP` names a
/// directory removed once the component has exited (etcd's data).
const LIFELINE: &str = r#"
cleanup() { [ -n "${WINKY_CLEANUP:-}" ] && rm -rf "$WINKY_CLEANUP"; }
stop() {
  kill "$child" 2>/dev/null
  i=0
  while kill -0 "$child" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  kill -9 "$child" 2>/dev/null
  wait "$child" 2>/dev/null
  cleanup
  exit 143
}
exec 3<&0
"$@" </dev/null 3<&- &
child=$!
trap stop TERM INT HUP
{ read -r _ <&3; kill -TERM $$; } &
watcher=$!
exec 3<&-
wait "$child"
status=$?
kill "$watcher" 2>/dev/null
cleanup
exit $status
"#;

/// A running component. Dropping it stops the component and waits for it.
#[derive(Debug)]
pub struct Component {
    name: String,
    log: PathBuf,
    lifeline: Option<ChildStdin>,
    wrapper: Child,
}

impl Component {
    /// Starts `program args…`, writing its output to `<log_dir>/<name>.log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log_dir: &Path,
        cleanup: Option<&Path>,
    ) -> Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(LIFELINE)
            .arg(name)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(out.try_clone()?)
            .stderr(out);
        if let Some(dir) = cleanup {
            cmd.env("WINKY_CLEANUP", dir);
        }
        let mut wrapper = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        let lifeline = wrapper.stdin.take();
        Ok(Self {
            name: name.to_string(),
            log,
            lifeline,
            wrapper,
        })
    }

    /// Name of the component.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Whether the component (its wrapper) has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.wrapper.try_wait(), Ok(Some(_)))
    }

    /// The last `lines` lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops the component and waits up to `grace` for it to exit.
    pub fn stop(&mut self, grace: Duration) {
        self.lifeline.take();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.wrapper.kill();
        let _ = self.wrapper.wait();
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

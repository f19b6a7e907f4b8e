//! The container sandbox, through the Docker Engine API (bollard) on a unix
//! socket — podman's compat service on these machines (`hack/podman.sh`,
//! docs/container-engine.md).
//!
//! Every run is a fresh container with: the memory limit and no swap beyond
//! it, network `none` (or the network namespace of the App it probes), a
//! read-only root filesystem
//! with a small `/tmp`, every capability dropped, `no-new-privileges`, a
//! non-root user, a pids limit, and a deadline after which it is killed.
//! The input goes to stdin through an attach made before the start, so no
//! output is lost; the exit is observed by polling `inspect` (podman's `wait`
//! busy-polls a core).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::container::{AttachContainerResults, LogOutput};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, ImportImageOptionsBuilder,
    KillContainerOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
};
use bollard::{ClientVersion, Docker, body_full};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

/// podman 4.3's compat API version; pinning it saves a 200 ms `GET /version`.
const API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};
/// Seconds a request may take until its response headers arrive.
const REQUEST_TIMEOUT: u64 = 120;
/// The user every sandboxed process runs as.
pub const SANDBOX_USER: i64 = winky_crds::defaults::RUN_AS;
/// Processes (threads included) a sandboxed container may have.
const PIDS_LIMIT: i64 = 64;
/// Most bytes of output kept from a run.
const MAX_OUTPUT: usize = 1 << 20;
/// How long the engine may take to report a container gone after SIGKILL
/// before the run is an engine failure rather than a slow reap.
const KILL_GRACE: Duration = Duration::from_secs(30);

/// Why a container check failed without an engine, and how to get one.
pub const NO_ENGINE: &str = "no container engine: `make up` starts one (found without flags), or \
    `hack/podman.sh start DIR` (pass the socket it prints with --engine or WINKY_ENGINE)";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "no container engine answers on {socket}: {message}. Start one with `hack/podman.sh start DIR` \
         (it prints the socket) and pass it with --engine or WINKY_ENGINE"
    )]
    Unreachable { socket: String, message: String },
    /// The engine answered, but not what was asked for.
    #[error("the container engine answered {0}")]
    Answer(String),
    // `error`, not `source`: the text is in the message once, not again as
    // the cause.
    #[error("the container engine failed to {action}: {error}")]
    Api {
        action: &'static str,
        error: bollard::errors::Error,
    },
}

fn api(action: &'static str) -> impl FnOnce(bollard::errors::Error) -> EngineError {
    move |error| EngineError::Api { action, error }
}

/// A connection to the engine.
#[derive(Clone, Debug)]
pub struct Engine {
    docker: Docker,
    socket: PathBuf,
}

/// One sandboxed run.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub image: String,
    /// Overrides the image's entrypoint when not empty.
    pub entrypoint: Vec<String>,
    /// Arguments (the image's `CMD`) when not empty.
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Written to stdin, which is then closed.
    pub stdin: Option<Vec<u8>>,
    pub memory_bytes: i64,
    /// CPU limit in billionths of a CPU.
    pub nano_cpus: i64,
    pub timeout: Duration,
    /// Join another container's network namespace (`container:<id>`);
    /// otherwise the container gets network `none`.
    pub network_of: Option<String>,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunOutcome {
    pub exit_code: Option<i64>,
    /// The kernel killed it for exceeding its memory limit.
    pub oom_killed: bool,
    /// It was still running at the deadline and was killed.
    pub timed_out: bool,
    /// From the SIGKILL at the deadline to the engine reporting the exit.
    pub kill_latency: Option<Duration>,
    pub stdout: String,
    pub stderr: String,
    /// From create to the process running.
    pub start_latency: Duration,
    /// From create to the engine reporting the process ended.
    pub ran_for: Duration,
    /// From create to removed.
    pub duration: Duration,
}

/// A running detached container (the App under a health check).
#[derive(Debug)]
pub struct Detached {
    pub id: String,
}

impl Engine {
    /// Connects to the Docker API on `socket` and checks that it answers.
    pub async fn connect(socket: &Path) -> Result<Self, EngineError> {
        let unreachable = |message: String| EngineError::Unreachable {
            socket: socket.display().to_string(),
            message,
        };
        let path = socket
            .to_str()
            .ok_or_else(|| unreachable("the path is not UTF-8".into()))?;
        let docker = Docker::connect_with_socket(path, REQUEST_TIMEOUT, &API_VERSION)
            .map_err(|e| unreachable(e.to_string()))?;
        docker.ping().await.map_err(|e| unreachable(e.to_string()))?;
        Ok(Self {
            docker,
            socket: socket.to_path_buf(),
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether the engine has an image of that name.
    pub async fn has_image(&self, reference: &str) -> Result<bool, EngineError> {
        match self.docker.inspect_image(reference).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(api("inspect an image")(e)),
        }
    }

    /// The id the engine gives the image of that name (`sha256:…`), `None`
    /// when it has none: an image loaded again under the same name gets a
    /// new id when its content changed.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>, EngineError> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(image.id),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(api("inspect an image")(e)),
        }
    }

    /// Loads a docker-archive (`POST /images/load`); see [`crate::images`].
    pub async fn load_archive(&self, archive: Vec<u8>) -> Result<(), EngineError> {
        let mut stream = self.docker.import_image(
            ImportImageOptionsBuilder::default().build(),
            body_full(archive.into()),
            None,
        );
        while let Some(item) = stream.next().await {
            item.map_err(api("load an image"))?;
        }
        Ok(())
    }

    fn host_config(spec: &RunSpec) -> HostConfig {
        let network_mode = match &spec.network_of {
            Some(id) => format!("container:{id}"),
            None => "none".to_string(),
        };
        HostConfig {
            memory: Some(spec.memory_bytes),
            memory_swap: Some(spec.memory_bytes),
            nano_cpus: Some(spec.nano_cpus),
            network_mode: Some(network_mode),
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            pids_limit: Some(PIDS_LIMIT),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_string(),
                "rw,size=16m,mode=1777".to_string(),
            )])),
            ..HostConfig::default()
        }
    }

    async fn create(&self, spec: &RunSpec, attach_stdin: bool) -> Result<String, EngineError> {
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: (!spec.entrypoint.is_empty()).then(|| spec.entrypoint.clone()),
            cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            user: Some(SANDBOX_USER.to_string()),
            attach_stdin: Some(attach_stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(attach_stdin),
            stdin_once: Some(attach_stdin),
            tty: Some(false),
            host_config: Some(Self::host_config(spec)),
            ..ContainerCreateBody::default()
        };
        let created = self
            .docker
            .create_container(Some(CreateContainerOptionsBuilder::default().build()), body)
            .await
            .map_err(api("create a container"))?;
        Ok(created.id)
    }

    /// `(running, exit code, OOM-killed)`, from `GET /containers/{id}/json`
    /// read as plain JSON: podman reports `stopped` between a process's exit
    /// and its cleanup (and sometimes for good, when the cleanup does not
    /// come), a state bollard's typed inspect cannot deserialize. `stopped`
    /// has exited all the same, and its exit code and OOM flag are there.
    async fn state(&self, id: &str) -> Result<(bool, Option<i64>, bool), EngineError> {
        let inspect = self.get_json(&format!("/containers/{id}/json")).await?;
        let state = &inspect["State"];
        let running = state["Running"].as_bool().unwrap_or(false)
            || matches!(
                state["Status"].as_str(),
                Some("running" | "created" | "configured" | "restarting")
            );
        Ok((
            running,
            state["ExitCode"].as_i64(),
            state["OOMKilled"].as_bool().unwrap_or(false),
        ))
    }

    /// A GET of the Docker API, answered as JSON, over a plain HTTP/1.0
    /// exchange on the socket.
    async fn get_json(&self, path: &str) -> Result<serde_json::Value, EngineError> {
        use tokio::io::AsyncReadExt;
        let failed = |message: String| EngineError::Unreachable {
            socket: self.socket.display().to_string(),
            message,
        };
        let mut stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let request = format!(
            "GET /v{}.{}{path} HTTP/1.0\r\nHost: engine\r\n\r\n",
            API_VERSION.major_version, API_VERSION.minor_version
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| EngineError::Answer(format!("GET {path}: a malformed HTTP answer")))?;
        if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
            let status = head.lines().next().unwrap_or_default();
            return Err(EngineError::Answer(format!("GET {path}: {status}")));
        }
        serde_json::from_str(body).map_err(|e| EngineError::Answer(format!("GET {path}: {e}")))
    }

    async fn wait_exit(&self, id: &str) -> Result<(Option<i64>, bool), EngineError> {
        loop {
            let (running, exit_code, oom) = self.state(id).await?;
            if !running {
                return Ok((exit_code, oom));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Removes a container, waiting at most [`KILL_GRACE`]: an engine slow
    /// to clean up must not hold the run (and its slot) any longer. What is
    /// left is the engine's to finish; `hack/podman.sh stop` removes all.
    pub async fn remove(&self, id: &str) {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        let _ = tokio::time::timeout(KILL_GRACE, self.docker.remove_container(id, Some(options))).await;
    }

    /// Runs `spec` to completion, or to its deadline; the container is removed afterwards.
    pub async fn run(&self, spec: &RunSpec) -> Result<RunOutcome, EngineError> {
        let started = Instant::now();
        let id = self.create(spec, spec.stdin.is_some()).await?;
        let outcome = self.run_created(&id, spec, started).await;
        self.remove(&id).await;
        let mut outcome = outcome?;
        outcome.duration = started.elapsed();
        Ok(outcome)
    }

    async fn run_created(
        &self,
        id: &str,
        spec: &RunSpec,
        started: Instant,
    ) -> Result<RunOutcome, EngineError> {
        let options = AttachContainerOptionsBuilder::default()
            .stdin(spec.stdin.is_some())
            .stdout(true)
            .stderr(true)
            .stream(true)
            .logs(false)
            .build();
        let AttachContainerResults {
            mut output,
            mut input,
        } = self
            .docker
            .attach_container(id, Some(options))
            .await
            .map_err(api("attach to a container"))?;
        self.docker
            .start_container(id, None::<StartContainerOptions>)
            .await
            .map_err(api("start a container"))?;
        let start_latency = started.elapsed();
        if let Some(data) = &spec.stdin {
            // A process that exits without reading its input closes the pipe:
            // that is its business, not an engine failure.
            let _ = input.write_all(data).await;
            let _ = input.shutdown().await;
        }
        let reader = tokio::spawn(async move {
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            while let Some(Ok(item)) = output.next().await {
                let (buffer, message) = match item {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => (&mut stdout, message),
                    LogOutput::StdErr { message } => (&mut stderr, message),
                    LogOutput::StdIn { .. } => continue,
                };
                if buffer.len() < MAX_OUTPUT {
                    buffer.extend_from_slice(&message[..message.len().min(MAX_OUTPUT - buffer.len())]);
                }
            }
            (stdout, stderr)
        });
        let mut reader = reader;
        let mut output = None;
        // The attach stream ends when the process does: wait for that first,
        // and poll inspect only for the moment between the exit and its record
        // (polling from the start would cost a request every 10 ms of the run).
        let exited = async {
            output = Some((&mut reader).await.unwrap_or_default());
            self.wait_exit(id).await
        };
        let (exit_code, oom_killed, kill_latency) = match tokio::time::timeout(spec.timeout, exited).await {
            Ok(result) => {
                let (exit_code, oom) = result?;
                (exit_code, oom, None)
            }
            Err(_) => {
                let killed = Instant::now();
                let kill = KillContainerOptionsBuilder::default().signal("SIGKILL").build();
                let stopped = async {
                    // The engine answers the kill once the process is gone
                    // (Docker's semantics for SIGKILL); a failed kill still
                    // leaves the exit record to wait for.
                    let _ = self.docker.kill_container(id, Some(kill)).await;
                    self.wait_exit(id).await
                };
                let (exit_code, oom) = tokio::time::timeout(KILL_GRACE, stopped).await.map_err(|_| {
                    EngineError::Answer(format!(
                        "no exit for container {id} within {} s of SIGKILL",
                        KILL_GRACE.as_secs()
                    ))
                })??;
                (exit_code, oom, Some(killed.elapsed()))
            }
        };
        let ran_for = started.elapsed();
        // The attach stream ends with the process; a stuck stream is not worth waiting for.
        let (stdout, stderr) = match output {
            Some(output) => output,
            None => tokio::time::timeout(Duration::from_secs(5), reader)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
        };
        Ok(RunOutcome {
            exit_code,
            oom_killed,
            timed_out: kill_latency.is_some(),
            kill_latency,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            start_latency,
            ran_for,
            duration: Duration::ZERO,
        })
    }

    /// Starts `spec` in the background (no stdin, no deadline): the caller
    /// probes it and removes it with [`Engine::remove`].
    pub async fn start_detached(&self, spec: &RunSpec) -> Result<Detached, EngineError> {
        let id = self.create(spec, false).await?;
        if let Err(e) = self
            .docker
            .start_container(&id, None::<StartContainerOptions>)
            .await
        {
            self.remove(&id).await;
            return Err(api("start a container")(e));
        }
        Ok(Detached { id })
    }

    /// Whether a detached container still runs, and its exit code if not.
    pub async fn exited(&self, id: &str) -> Result<Option<Option<i64>>, EngineError> {
        let (running, exit_code, _) = self.state(id).await?;
        Ok((!running).then_some(exit_code))
    }

    /// The output of a container so far (for a failed health check).
    pub async fn logs(&self, id: &str) -> String {
        let options = bollard::query_parameters::LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .build();
        let mut stream = self.docker.logs(id, Some(options));
        let mut out = Vec::new();
        while let Some(Ok(item)) = stream.next().await {
            out.extend_from_slice(&item.into_bytes());
            if out.len() > MAX_OUTPUT {
                break;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

//! The command line: `winky propose`, `winky branch-name`, `winky redact`,
//! `winky emulate`, `winky image`, `winky status`.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::branch::{BranchName, ChangeType};
use crate::generate;
use crate::git::{Credentials, Repo};
use crate::github::{self, GitHubConfig};
use crate::planner::Planner;
use crate::planner::offline::OfflinePlanner;
use crate::planner::openai::{OpenAiConfig, OpenAiPlanner};
use crate::propose::{self, ProposeOptions};
use crate::redact::Redactor;
use crate::secrets::Secrets;
use crate::status;

/// Winky's agent CLI: from a plain-English prompt to a checked, draft pull request
/// on a `winky/<type>-<words>-<id>` branch. It never pushes anywhere else, never
/// force-pushes, never approves, and never lets a secret from the prompt through.
#[derive(Debug, Parser)]
#[command(name = "winky", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Plan, generate and check an app from a prompt, then open a draft pull request.
    ///
    /// Steps, each printed as it runs: redact the prompt, plan, generate App/Function/Rule
    /// manifests, run every Rule test (and a server-side dry run when a kubeconfig is
    /// available), preview the files and diff, then commit on a new winky/ branch, push it
    /// and open a draft pull request. Every step is appended to the audit log.
    ///
    /// Example:
    ///   winky propose "A notes app with email login, markdown editor, tags, and images"
    ///   winky propose --dry-run "Chat app with rooms, messages, and push notifications"
    ///
    /// Credentials, from the environment only:
    ///   WINKY_GITHUB_TOKEN (or GITHUB_TOKEN)  opens the pull request; pushes unless WINKY_GIT_TOKEN is set
    ///   WINKY_GIT_TOKEN, WINKY_GIT_USERNAME    push credentials (username defaults to x-access-token)
    ///   WINKY_OPENAI_API_KEY                   the provider's key for --planner openai
    /// Any of them may hold a Vault reference instead, vault:<mount>/<path>#<key> (KV v2),
    /// read with VAULT_TOKEN from VAULT_ADDR.
    #[command(verbatim_doc_comment)]
    Propose(Box<ProposeArgs>),
    /// Print the branch `winky propose` would use for a prompt.
    BranchName(BranchNameArgs),
    /// Run the emulator checks of an App: every object validated against the CRDs, every
    /// Rule test, every Function test case in a container sandbox, and the App's health probe.
    ///
    /// The manifests come from -f (a file or a directory, read recursively). Every Winky
    /// object is first validated offline against the CRDs' schemas and CEL rules, as the
    /// apiserver would; an invalid object, or a document that does not parse (file and line),
    /// is a failed check and does not run; the other files still do. With --kubeconfig the
    /// objects are also dry-run on that cluster. Without an App, the Rules' tests run on
    /// their own. Function and App images must be in the container engine (see
    /// `winky image import`). The exit code is 1 when a check fails.
    ///
    /// Example:
    ///   make up                                      # its engine is found without flags
    ///   winky emulate -f examples/notes
    ///   hack/podman.sh start /tmp/winky-engine       # prints the socket
    ///   winky emulate -f examples/notes --engine /tmp/winky-engine/podman.sock
    ///   winky emulate -f deploy --app shop --output json --kubeconfig .dev/kubeconfig
    ///   winky emulate -f rules.yaml                  # Rule tests only, no App needed
    #[command(verbatim_doc_comment)]
    Emulate(EmulateArgs),
    /// Show an App's promotion pipeline, stage by stage, as the cluster records it.
    ///
    /// For each stage of the App's PromotionPolicy, in order: the revision it runs (revision
    /// id, commit, pull request), the revision waiting to enter and its phase, each gate of
    /// the waiting Promotion with its state and evidence, the approvals it has and needs (who
    /// counted, and why the others did not), who may approve, whether it is held, and its last
    /// history entries. Reads the App, its PromotionPolicy and its Promotions; writes nothing.
    ///
    /// Example:
    ///   winky status notes -n notes
    ///   winky status notes -n notes -o json | jq '.stages[] | {name, running: .running.revision.id}'
    ///   winky status shop -n shop --kubeconfig .dev/kubeconfig
    ///
    /// The cluster is the one kubectl would use: --kubeconfig, else $KUBECONFIG, else
    /// ~/.kube/config, else the in-cluster service account. The namespace defaults to the
    /// context's. An App without a policy is reported as such (exit code 0).
    #[command(verbatim_doc_comment)]
    Status(StatusArgs),
    /// Manage images in the container engine.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Redact secret-shaped content from text (an argument, or stdin with `-`) and
    /// report what was found: rule, line and column, never the value.
    Redact {
        /// The text, or `-` to read standard input.
        text: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A table for people.
    Text,
    /// The EmulatorReport as JSON.
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    /// A block per stage, for people; plain text, no colour.
    Text,
    /// The pipeline as one JSON object, one entry of `stages` per stage
    /// (winky_agent::status::StatusView; docs/promotions.md).
    Json,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The App's name.
    pub app: String,
    /// The App's namespace (default: the kubeconfig context's, else `default`).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// How to print the pipeline.
    #[arg(long, short = 'o', value_enum, default_value_t = StatusFormat::Text)]
    pub output: StatusFormat,
    /// The kubeconfig to use (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
}

#[derive(Debug, Args)]
pub struct EngineArgs {
    /// The container engine's Docker API socket (podman's: `hack/podman.sh start DIR` prints it).
    /// Also read from DOCKER_HOST when it is unix://…; without either, the engine `make up`
    /// started (.dev/engine/podman.sock here or in a directory above) is used.
    #[arg(long, env = "WINKY_ENGINE")]
    pub engine: Option<PathBuf>,
}

impl EngineArgs {
    /// --engine, WINKY_ENGINE or DOCKER_HOST=unix://…
    pub fn explicit(&self) -> Option<PathBuf> {
        self.engine.clone().or_else(|| {
            env_nonempty("DOCKER_HOST").and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        })
    }

    /// The explicit socket, else the one `make up` started (found from the
    /// current directory up).
    fn socket(&self) -> Option<PathBuf> {
        self.explicit().or_else(|| {
            std::env::current_dir()
                .ok()
                .and_then(|dir| crate::emulate::discover_engine(&dir))
        })
    }
}

#[derive(Debug, Args)]
pub struct EmulateArgs {
    /// Manifests: a file, or a directory read recursively.
    #[arg(short = 'f', long = "file", default_value = ".")]
    pub file: PathBuf,
    /// The App to check, when the manifests hold several.
    #[arg(long)]
    pub app: Option<String>,
    /// How to print the report.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Also dry-run every valid App, Function and Rule on this cluster (server-side apply,
    /// nothing is written); a refusal is a failed check.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Package a statically linked program as an image in the engine (no registry needed):
    /// busybox for a shell, the program as the entrypoint /fn, user 65532.
    Import {
        /// The image name to give it, as Functions and Apps reference it.
        reference: String,
        /// The program (for Go: CGO_ENABLED=0 go build).
        program: PathBuf,
        #[command(flatten)]
        engine: EngineArgs,
    },
}

#[derive(Debug, Args)]
pub struct BranchNameArgs {
    /// The prompt, or `-` to read standard input.
    pub prompt: String,
    /// Conventional-commit type, which is also the branch prefix.
    #[arg(long = "type", value_enum, default_value_t = ChangeType::Feat)]
    pub change: ChangeType,
    /// Another seed gives another branch id for the same prompt.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlannerKind {
    /// Deterministic, no network: maps the prompt's features to a plan.
    Offline,
    /// An OpenAI-compatible chat-completions endpoint with JSON-schema output.
    Openai,
}

#[derive(Debug, Args)]
pub struct ProposeArgs {
    /// What to build, in plain English, or `-` to read standard input.
    pub prompt: String,
    /// A checkout of the app repository (default: the current directory).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Conventional-commit type of the change; also the branch prefix.
    #[arg(long = "type", value_enum, default_value_t = ChangeType::Feat)]
    pub change: ChangeType,
    /// Same prompt and seed give the same files and branch; another seed gives another branch.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Use this branch name instead of the generated one; it must match
    /// ^winky/(feat|fix|chore|refactor|docs|test|perf)-<1 to 5 words>-<6+ hex>$.
    #[arg(long)]
    pub branch: Option<String>,
    /// Stop after the preview: nothing is committed, pushed or opened.
    #[arg(long)]
    pub dry_run: bool,
    /// The git remote to push to.
    #[arg(long, default_value = "origin")]
    pub remote: String,
    /// Directory of the repository that holds the manifests; the app goes to <DIR>/<app>/.
    #[arg(long, default_value = "deploy")]
    pub dir: String,
    /// Registry prefix for the app's and functions' images.
    #[arg(long, default_value = "registry.local")]
    pub registry: String,
    /// The PromotionPolicy the App follows.
    #[arg(long, default_value = "default")]
    pub policy: String,

    /// Which planner turns the prompt into a plan.
    #[arg(long, value_enum, default_value_t = PlannerKind::Offline, help_heading = "Planning")]
    pub planner: PlannerKind,
    /// Base URL of the OpenAI-compatible API, up to the version (`…/v1`).
    #[arg(
        long,
        env = "WINKY_OPENAI_BASE_URL",
        default_value = "https://api.openai.com/v1",
        help_heading = "Planning"
    )]
    pub openai_base_url: String,
    /// Model name sent to the provider.
    #[arg(
        long,
        env = "WINKY_OPENAI_MODEL",
        default_value = "gpt-4o-mini",
        help_heading = "Planning"
    )]
    pub openai_model: String,
    /// API key of the provider, or a Vault reference `vault:<mount>/<path>#<key>`.
    /// Prefer the environment variable: flags show in process lists.
    #[arg(
        long,
        env = "WINKY_OPENAI_API_KEY",
        hide_env_values = true,
        help_heading = "Planning"
    )]
    pub openai_api_key: Option<String>,
    /// Seconds to wait for the provider.
    #[arg(long, default_value_t = 120, help_heading = "Planning")]
    pub openai_timeout: u64,

    /// Kubeconfig for the server-side dry run (default: $KUBECONFIG or ~/.kube/config when present).
    #[arg(long, help_heading = "Checks")]
    pub kubeconfig: Option<PathBuf>,
    /// Do not dry-run the manifests against a cluster even when a kubeconfig is present.
    #[arg(long, help_heading = "Checks")]
    pub no_server_check: bool,

    /// GitHub API base URL (GitHub Enterprise: https://HOST/api/v3).
    #[arg(
        long,
        env = "WINKY_GITHUB_API",
        default_value = "https://api.github.com",
        help_heading = "Publishing"
    )]
    pub github_api: String,
    /// The repository as OWNER/NAME (default: from the remote's github.com URL).
    #[arg(long, help_heading = "Publishing")]
    pub github_repo: Option<String>,
    /// Who the audit log names as the actor.
    #[arg(
        long,
        env = "WINKY_ACTOR",
        default_value = "winky-agent",
        help_heading = "Publishing"
    )]
    pub actor: String,
    /// The audit log (JSON lines, appended).
    #[arg(long, env = "WINKY_AUDIT_LOG", help_heading = "Publishing")]
    pub audit_log: Option<PathBuf>,
}

/// Tokens come from the environment (the value, or a `vault:` reference),
/// never from flags or files.
const GITHUB_TOKEN_VARS: [&str; 2] = ["WINKY_GITHUB_TOKEN", "GITHUB_TOKEN"];

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn read_arg(text: &str) -> anyhow::Result<String> {
    if text == "-" {
        let mut buffer = String::new();
        std::io::stdin().read_to_string(&mut buffer)?;
        Ok(buffer)
    } else {
        Ok(text.to_string())
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::BranchName(args) => {
            let prompt = Redactor::builtin().redact(&read_arg(&args.prompt)?).text;
            println!("{}", BranchName::for_prompt(&prompt, args.change, args.seed));
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Redact { text } => {
            let redacted = Redactor::builtin().redact(&read_arg(&text)?);
            print!("{}", redacted.text);
            if !redacted.text.ends_with('\n') {
                println!();
            }
            for finding in &redacted.findings {
                eprintln!("redacted {finding}: {}", finding.description);
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Propose(args) => propose_command(*args).await,
        Command::Emulate(args) => emulate_command(args).await,
        Command::Status(args) => status_command(args).await,
        Command::Image(ImageCommand::Import {
            reference,
            program,
            engine,
        }) => {
            let socket = engine.socket().ok_or_else(no_engine)?;
            let engine = winky_emulator::Engine::connect(&socket).await?;
            winky_emulator::images::import_program(&engine, &reference, &program).await?;
            eprintln!("imported {} as {reference}", program.display());
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

fn no_engine() -> anyhow::Error {
    anyhow::anyhow!("{}", winky_emulator::engine::NO_ENGINE)
}

async fn emulate_command(args: EmulateArgs) -> anyhow::Result<std::process::ExitCode> {
    crate::emulate::run(args).await
}

async fn status_command(args: StatusArgs) -> anyhow::Result<std::process::ExitCode> {
    let cluster = status::connect(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| cluster.default_namespace.clone());
    let loaded = status::load(&cluster, &namespace, &args.app).await?;
    let view = status::view(&loaded.app, loaded.policy.as_ref(), &loaded.promotions);
    match args.output {
        StatusFormat::Json => {
            // The JSON stays one object (no stages), the sentence goes to people.
            if view.policy.is_none() {
                eprintln!("winky: {}", status::no_policy_message(&view));
            }
            println!("{}", serde_json::to_string_pretty(&view)?);
        }
        StatusFormat::Text => print!("{}", status::render_text(&view)),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn kube_client(args: &ProposeArgs) -> anyhow::Result<Option<kube::Client>> {
    if args.no_server_check {
        return Ok(None);
    }
    use kube::config::Kubeconfig;
    let kubeconfig = match &args.kubeconfig {
        Some(path) => Kubeconfig::read_from(path)
            .map_err(|e| anyhow::anyhow!("cannot read kubeconfig {}: {e}", path.display()))?,
        None => {
            let default = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".kube/config"));
            if env_nonempty("KUBECONFIG").is_none() && !default.is_some_and(|d| d.exists()) {
                return Ok(None);
            }
            // kube reads $KUBECONFIG (a list of files, merged) or ~/.kube/config.
            Kubeconfig::read().map_err(|e| anyhow::anyhow!("cannot read the kubeconfig: {e}"))?
        }
    };
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| anyhow::anyhow!("kubeconfig: {e}"))?;
    Ok(Some(kube::Client::try_from(config)?))
}

async fn propose_command(args: ProposeArgs) -> anyhow::Result<std::process::ExitCode> {
    let prompt = read_arg(&args.prompt)?;
    let mut secrets = Secrets::default();
    let planner: Box<dyn Planner> = match args.planner {
        PlannerKind::Offline => Box::new(OfflinePlanner),
        PlannerKind::Openai => Box::new(OpenAiPlanner::new(OpenAiConfig {
            base_url: args.openai_base_url.clone(),
            model: args.openai_model.clone(),
            api_key: secrets.resolve_opt(args.openai_api_key.clone()).await?,
            timeout: Duration::from_secs(args.openai_timeout),
        })?),
    };
    let token = secrets
        .resolve_opt(GITHUB_TOKEN_VARS.iter().find_map(|name| env_nonempty(name)))
        .await?;
    // Without a token there is no pull request to open: propose refuses,
    // unless --dry-run stops it before.
    let github = match token.clone() {
        None => None,
        Some(token) => {
            let spec = match &args.github_repo {
                Some(spec) => spec.clone(),
                None => Repo::open(&args.repo)?.remote_url(&args.remote)?,
            };
            let (owner, repo) = github::parse_repository(&spec)?;
            Some(GitHubConfig {
                api_url: args.github_api.clone(),
                owner,
                repo,
                token,
            })
        }
    };
    let git_credentials = Credentials {
        username: env_nonempty("WINKY_GIT_USERNAME").unwrap_or_default(),
        token: secrets
            .resolve_opt(env_nonempty("WINKY_GIT_TOKEN"))
            .await?
            .or(token),
    };
    let options = ProposeOptions {
        prompt,
        repo: args.repo.clone(),
        change: args.change,
        seed: args.seed,
        branch: args.branch.clone(),
        dry_run: args.dry_run,
        remote: args.remote.clone(),
        planner,
        kube: kube_client(&args).await?,
        github,
        git_credentials,
        generate: generate::Options {
            dir: args.dir.clone(),
            registry: args.registry.clone(),
            policy: args.policy.clone(),
        },
        audit_log: args.audit_log.clone().unwrap_or_else(crate::audit::default_path),
        actor: args.actor.clone(),
    };
    match propose::propose(options).await {
        Ok(proposal) => {
            if let Some(pull) = &proposal.pull_request {
                println!("{}", pull.url);
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Err(propose::ProposeError::Refused(reason)) => {
            eprintln!("winky: refused: {reason}");
            Ok(std::process::ExitCode::from(3))
        }
        Err(e) => {
            eprintln!("winky: {e}");
            Ok(std::process::ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }
}

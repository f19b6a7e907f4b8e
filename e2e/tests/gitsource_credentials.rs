//! The GitSource controller's credentials against a real `git http-backend`
//! behind HTTP basic authentication (e2e/src/git.rs `HttpGitServer`) and the
//! real kube-apiserver: the Secret's username and password open the
//! repository; a wrong password or none is reported clearly and retried, and
//! the password shows nowhere; a Secret that appears later is picked up
//! within the interval; a remote that redirects to another host does not get
//! them passed on.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::ListParams;
use kube::{Api, Client};
use winky_crds::{App, GitSource};
use winky_e2e::git::{GitServer, HttpGitServer, HttpRedirect, WorkTree};
use winky_e2e::gitops::{self, app_yaml};
use winky_e2e::{ControlPlane, InProcessOperator, TestNamespace, apply_json, eventually};

const WAIT: Duration = Duration::from_secs(30);
const USERNAME: &str = "winky-bot";
/// Distinctive, so finding it anywhere is certain to be a leak.
const PASSWORD: &str = "Right-pass-4c1d9e-secret";
const WRONG_PASSWORD: &str = "Wrong-pass-93b7f2-secret";

struct Env {
    client: Client,
    ns: TestNamespace,
    operator: InProcessOperator,
    server: HttpGitServer,
    dir: tempfile::TempDir,
}

async fn env(prefix: &str) -> Env {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, prefix).await.unwrap();
    let operator = InProcessOperator::start(client.clone(), ns.name(), &format!("{prefix}-operator"));
    let dir = tempfile::tempdir().unwrap();
    let server = HttpGitServer::start(dir.path(), USERNAME, PASSWORD).unwrap();
    Env {
        client,
        ns,
        operator,
        server,
        dir,
    }
}

async fn secret(env: &Env, name: &str, username: &str, password: &str) {
    apply_json::<Secret>(
        &env.client,
        env.ns.name(),
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "type": "kubernetes.io/basic-auth",
            "stringData": {"username": username, "password": password},
        }),
    )
    .await;
}

/// A GitSource of `url`'s `main`, `deploy/`, with `credentials` naming a Secret when given.
async fn source(env: &Env, name: &str, url: &str, interval: &str, credentials: Option<&str>) -> GitSource {
    let mut spec = serde_json::json!({
        "url": url,
        "branch": "main",
        "path": "deploy",
        "interval": interval,
    });
    if let Some(secret) = credentials {
        spec["credentials"] = serde_json::json!({"secretRef": {"name": secret}});
    }
    apply_json(
        &env.client,
        env.ns.name(),
        serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1",
            "kind": "GitSource",
            "metadata": {"name": name},
            "spec": spec,
        }),
    )
    .await
}

fn find(source: &GitSource, type_: &str) -> (String, String, String) {
    source
        .status
        .iter()
        .flat_map(|s| s.conditions.iter())
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

async fn events_of_namespace(env: &Env) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(env.client.clone(), env.ns.name());
    api.list(&ListParams::default()).await.unwrap().items
}

fn errors(env: &Env, category: &str) -> f64 {
    env.operator.metric(&format!(
        r#"winky_reconcile_errors_total{{controller="gitsource",category="{category}"}}"#
    ))
}

#[tokio::test]
async fn the_secrets_credentials_open_the_repository() {
    let env = env("gitcred-ok").await;
    env.server
        .create("apps", &[("deploy/notes.yaml", &app_yaml("notes", "notes:1"))])
        .unwrap();
    // The git CLI went through the authentication to seed it (clone and push).
    let seeded = env.server.authenticated();
    assert!(seeded >= 3, "{:#?}", env.server.log());
    let refused_before = env.server.refusals();
    secret(&env, "git-credentials", USERNAME, PASSWORD).await;

    source(
        &env,
        "apps",
        &env.server.url("apps"),
        "1s",
        Some("git-credentials"),
    )
    .await;
    let ready = gitops::condition(
        &env.client,
        env.ns.name(),
        "apps",
        "Ready",
        "True",
        Some("Succeeded"),
    )
    .await;
    let apps: Api<App> = Api::namespaced(env.client.clone(), env.ns.name());
    assert_eq!(apps.get("notes").await.unwrap().spec.image, "notes:1");
    let first = ready.status.unwrap().last_applied_commit.unwrap();

    // The operator's own requests were authenticated: libgit2 is challenged
    // first and answers the challenge with the Secret's credentials.
    let log = env.server.log();
    assert!(
        env.server.authenticated() > seeded,
        "the operator's fetch was authenticated: {log:#?}"
    );
    assert!(
        env.server.refusals() > refused_before,
        "libgit2 sent credentials after a 401 challenge: {log:#?}"
    );
    assert_eq!(
        env.server.wrong_credentials(),
        0,
        "no request carried other credentials: {log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("POST /apps.git/git-upload-pack ")
                && l.ends_with(&format!("user={USERNAME} → 200"))),
        "the pack was served to {USERNAME}: {log:#?}"
    );

    // A merge cloned and pushed with the git CLI through the server is applied too.
    let work = WorkTree::clone(
        &env.server.url_with_credentials("apps"),
        &env.dir.path().join("work"),
    )
    .unwrap();
    assert_eq!(work.head().unwrap(), first);
    work.write("deploy/notes.yaml", &app_yaml("notes", "notes:2"))
        .unwrap();
    let second = work.commit_and_push("feat: notes 2").unwrap();
    let api: Api<GitSource> = Api::namespaced(env.client.clone(), env.ns.name());
    eventually("the second commit to be applied", WAIT, || async {
        let source = api.get("apps").await.ok()?;
        (source.status?.last_applied_commit.as_deref() == Some(second.as_str())).then_some(())
    })
    .await;
    assert_eq!(apps.get("notes").await.unwrap().spec.image, "notes:2");
    assert_eq!(env.server.wrong_credentials(), 0);
}

#[tokio::test]
async fn a_wrong_password_is_reported_retried_and_never_shown() {
    let env = env("gitcred-wrong").await;
    env.server
        .create("apps", &[("deploy/notes.yaml", &app_yaml("notes", "notes:1"))])
        .unwrap();
    let authenticated = env.server.authenticated();
    secret(&env, "git-credentials", USERNAME, WRONG_PASSWORD).await;
    let url = env.server.url("apps");
    source(&env, "apps", &url, "1s", Some("git-credentials")).await;

    let failed = gitops::condition(
        &env.client,
        env.ns.name(),
        "apps",
        "Ready",
        "False",
        Some("FetchFailed"),
    )
    .await;
    let (_, _, text) = find(&failed, "Ready");
    assert!(text.contains(&url), "names the URL: {text}");
    assert!(!text.contains('@'), "no user information in the URL: {text}");
    assert!(
        text.contains("the remote refused the credentials of the GitSource's Secret"),
        "says the remote refused the credentials: {text}"
    );
    let (status, reason, _) = find(&failed, "Reconciling");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "ProgressingWithRetry")
    );
    assert_eq!(find(&failed, "Stalled").0, "False");

    // The wrong credentials were really presented, and got nothing.
    assert!(env.server.wrong_credentials() > 0, "{:#?}", env.server.log());
    assert_eq!(env.server.authenticated(), authenticated);
    let apps: Api<App> = Api::namespaced(env.client.clone(), env.ns.name());
    assert!(apps.get_opt("notes").await.unwrap().is_none());

    // Retried: the remote keeps being asked, the failures are counted.
    let refused = env.server.wrong_credentials();
    eventually("a retry with the same credentials", WAIT, || async {
        (env.server.wrong_credentials() > refused && errors(&env, "fetch") >= 2.0).then_some(())
    })
    .await;

    // The Warning Event is out; then nothing anywhere holds the password.
    let events = eventually("a FetchFailed Warning Event", WAIT, || async {
        let events = events_of_namespace(&env).await;
        events
            .iter()
            .any(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("FetchFailed"))
            .then_some(events)
    })
    .await;
    let events = serde_json::to_string(&events).unwrap();
    assert!(events.contains("refused the credentials"), "{events}");
    let api: Api<GitSource> = Api::namespaced(env.client.clone(), env.ns.name());
    let stored = serde_json::to_string(&api.get("apps").await.unwrap()).unwrap();
    let metrics = env.operator.health.metrics.encode();
    assert!(
        metrics.contains("winky_reconcile_errors_total"),
        "the exposition is the real one: {metrics}"
    );
    for secret in [WRONG_PASSWORD, PASSWORD] {
        assert!(
            !stored.contains(secret),
            "the GitSource shows a password: {stored}"
        );
        assert!(!events.contains(secret), "an Event shows a password: {events}");
        assert!(
            !metrics.contains(secret),
            "the metrics show a password: {metrics}"
        );
    }

    // Fixing the Secret is picked up at the next retry.
    secret(&env, "git-credentials", USERNAME, PASSWORD).await;
    gitops::condition(
        &env.client,
        env.ns.name(),
        "apps",
        "Ready",
        "True",
        Some("Succeeded"),
    )
    .await;
    assert!(apps.get_opt("notes").await.unwrap().is_some());
}

#[tokio::test]
async fn no_credentials_for_a_protected_remote_says_it_asks_for_them() {
    let env = env("gitcred-none").await;
    env.server
        .create("apps", &[("deploy/notes.yaml", &app_yaml("notes", "notes:1"))])
        .unwrap();
    let refused = env.server.refusals();
    let url = env.server.url("apps");
    source(&env, "apps", &url, "1s", None).await;

    let failed = gitops::condition(
        &env.client,
        env.ns.name(),
        "apps",
        "Ready",
        "False",
        Some("FetchFailed"),
    )
    .await;
    let (_, _, text) = find(&failed, "Ready");
    assert!(text.contains(&url), "names the URL: {text}");
    assert!(
        text.contains("the remote asks for credentials: set spec.credentials.secretRef"),
        "says the remote asks for credentials and how to give them: {text}"
    );
    assert_eq!(find(&failed, "Reconciling").0, "True");
    assert!(env.server.refusals() > refused, "{:#?}", env.server.log());
    assert_eq!(
        env.server.wrong_credentials(),
        0,
        "nothing was made up: {:#?}",
        env.server.log()
    );
}

#[tokio::test]
async fn a_secret_that_appears_later_is_picked_up_within_the_interval() {
    let env = env("gitcred-late").await;
    // The same repositories over git:// and over HTTP behind authentication.
    let daemon = GitServer::start(env.dir.path()).unwrap();
    daemon
        .create("apps", &[("deploy/notes.yaml", &app_yaml("notes", "notes:1"))])
        .unwrap();
    let http = HttpGitServer::serving(&daemon, USERNAME, PASSWORD).unwrap();
    assert_eq!(http.git_dir("apps"), daemon.git_dir("apps"));
    let url = http.url("apps");
    source(&env, "apps", &url, "2s", Some("late-credentials")).await;

    let failed = gitops::condition(
        &env.client,
        env.ns.name(),
        "apps",
        "Ready",
        "False",
        Some("CredentialsFailed"),
    )
    .await;
    let (_, _, text) = find(&failed, "Ready");
    assert_eq!(
        text,
        format!("Secret {}/late-credentials does not exist", env.ns.name())
    );
    assert_eq!(find(&failed, "Reconciling").0, "True");
    assert_eq!(http.requests(), 0, "nothing is fetched without the Secret");

    // Enough failures that an uncapped backoff would wait ≥ 12.8 s
    // (16 s × 0.8 jitter) before the next retry; the interval caps it at 2 s.
    eventually("five failed attempts", WAIT, || async {
        (errors(&env, "credentials") >= 5.0).then_some(())
    })
    .await;
    secret(&env, "late-credentials", USERNAME, PASSWORD).await;
    let created = Instant::now();
    gitops::condition(
        &env.client,
        env.ns.name(),
        "apps",
        "Ready",
        "True",
        Some("Succeeded"),
    )
    .await;
    let took = created.elapsed();
    println!("Secret created → applied: {took:?}");
    assert!(
        took < Duration::from_secs(6),
        "retried within the 2 s interval (plus the sync), took {took:?}"
    );
    let apps: Api<App> = Api::namespaced(env.client.clone(), env.ns.name());
    assert!(apps.get_opt("notes").await.unwrap().is_some());
    assert!(http.authenticated() > 0, "{:#?}", http.log());
}

#[tokio::test]
async fn credentials_are_not_passed_on_to_another_host_after_a_redirect() {
    let env = env("gitcred-redirect").await;
    env.server
        .create("apps", &[("deploy/notes.yaml", &app_yaml("notes", "notes:1"))])
        .unwrap();
    let (authenticated, refused) = (env.server.authenticated(), env.server.refusals());
    // 127.0.0.1 sends the client to `localhost`: another host, by name.
    let elsewhere = format!("http://localhost:{}", env.server.port());
    let redirect = HttpRedirect::start(&elsewhere).unwrap();
    secret(&env, "git-credentials", USERNAME, PASSWORD).await;
    let url = redirect.url("apps");
    source(&env, "apps", &url, "1s", Some("git-credentials")).await;

    let failed = gitops::condition(
        &env.client,
        env.ns.name(),
        "apps",
        "Ready",
        "False",
        Some("FetchFailed"),
    )
    .await;
    let (_, _, text) = find(&failed, "Ready");
    assert!(text.contains(&url), "names the URL: {text}");
    let origin = url.trim_end_matches("/apps.git");
    assert!(
        text.contains(&format!(
            "the remote redirected to {elsewhere}/apps.git: the GitSource's credentials are only sent to {origin}"
        )),
        "says where it was sent and why the credentials were not: {text}"
    );
    assert!(redirect.redirected() > 0);
    let log = env.server.log();
    assert!(
        env.server.refusals() > refused,
        "the other host was reached and asked for credentials: {log:#?}"
    );
    assert_eq!(
        env.server.authenticated(),
        authenticated,
        "the other host got the credentials: {log:#?}"
    );
    assert_eq!(env.server.wrong_credentials(), 0, "{log:#?}");
    let apps: Api<App> = Api::namespaced(env.client.clone(), env.ns.name());
    assert!(apps.get_opt("notes").await.unwrap().is_none());
}

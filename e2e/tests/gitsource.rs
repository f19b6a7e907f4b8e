//! The GitSource controller against a real `git daemon` and the real
//! kube-apiserver: what is merged into `main` is applied, changed, pruned and
//! put back after hand edits; a bad commit applies nothing and the previous
//! one stays; a second GitSource cannot take over; a remote that is down
//! prunes nothing.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use winky_crds::keys::{GIT_COMMIT_ANNOTATION, GIT_SOURCE_ANNOTATION};
use winky_crds::{App, GitSource};
use winky_e2e::git::{GitServer, WorkTree};
use winky_e2e::gitops::{self, WAIT, app_yaml};
use winky_e2e::{ControlPlane, InProcessOperator, TestNamespace, apply_json, eventually, gone_or_going};

struct Env {
    client: Client,
    ns: TestNamespace,
    _operator: InProcessOperator,
    git: GitServer,
    dir: tempfile::TempDir,
}

async fn env(prefix: &str) -> Env {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, prefix).await.unwrap();
    let operator = InProcessOperator::start(client.clone(), ns.name(), &format!("{prefix}-operator"));
    let dir = tempfile::tempdir().unwrap();
    let git = GitServer::start(dir.path()).unwrap();
    Env {
        client,
        ns,
        _operator: operator,
        git,
        dir,
    }
}

async fn source(env: &Env, name: &str, repo: &str, extra: serde_json::Value) -> GitSource {
    let mut spec = serde_json::json!({
        "url": env.git.url(repo),
        "branch": "main",
        "path": "deploy",
        "interval": "1s",
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
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

async fn events_of(env: &Env, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(env.client.clone(), env.ns.name());
    api.list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn what_is_merged_is_applied_changed_pruned_and_put_back() {
    let env = env("gitops").await;
    let bare = env
        .git
        .create(
            "apps",
            &[
                ("deploy/notes.yaml", &app_yaml("notes", "notes:1")),
                ("README.md", "apps\n"),
            ],
        )
        .unwrap();
    let _ = bare;
    let work = WorkTree::clone(&env.git.url("apps"), &env.dir.path().join("work")).unwrap();
    let first = work.head().unwrap();

    let started = Instant::now();
    source(&env, "apps", "apps", serde_json::json!({})).await;
    let synced = gitops::applied(&env.client, env.ns.name(), "apps", &first).await;
    println!(
        "GitSource created → first commit applied: {:?}",
        started.elapsed()
    );
    let status = synced.status.clone().unwrap();
    assert_eq!(status.last_fetched_commit.as_deref(), Some(first.as_str()));
    assert_eq!(status.inventory.len(), 1);
    assert_eq!(status.inventory[0].name, "notes");
    let ready = gitops::condition(
        &env.client,
        env.ns.name(),
        "apps",
        "Ready",
        "True",
        Some("Succeeded"),
    )
    .await;
    assert!(
        gitops::message(&ready, "Ready").contains("1 objects"),
        "{}",
        gitops::message(&ready, "Ready")
    );

    let apps: Api<App> = Api::namespaced(env.client.clone(), env.ns.name());
    let notes = apps.get("notes").await.unwrap();
    let annotations = notes.annotations();
    assert_eq!(
        annotations[GIT_SOURCE_ANNOTATION],
        format!("{}/apps", env.ns.name())
    );
    assert_eq!(annotations[GIT_COMMIT_ANNOTATION], first);
    assert!(
        notes
            .managed_fields()
            .iter()
            .any(|f| f.manager.as_deref() == Some(&format!("winky-gitsource/{}/apps", env.ns.name()))),
        "applied under the GitSource's own field manager"
    );
    // The App controller records the commit in the App's revision.
    eventually("the App's revision to carry the commit", WAIT, || async {
        let app = apps.get("notes").await.ok()?;
        (app.status?.revision?.git_commit.as_deref() == Some(first.as_str())).then_some(())
    })
    .await;

    // A change and an addition.
    work.write("deploy/notes.yaml", &app_yaml("notes", "notes:2"))
        .unwrap();
    work.write("deploy/more/shop.yml", &app_yaml("shop", "shop:1"))
        .unwrap();
    let second = work.commit_and_push("feat: shop, notes 2").unwrap();
    let started = Instant::now();
    let synced = gitops::applied(&env.client, env.ns.name(), "apps", &second).await;
    println!("push → applied through the 1 s interval: {:?}", started.elapsed());
    assert_eq!(synced.status.unwrap().inventory.len(), 2);
    assert_eq!(apps.get("notes").await.unwrap().spec.image, "notes:2");
    assert_eq!(apps.get("shop").await.unwrap().spec.image, "shop:1");

    // Drift: an edit by hand is put back at the next sync.
    apps.patch(
        "notes",
        &PatchParams::apply("someone").force(),
        &Patch::Apply(serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "App", "metadata": {"name": "notes"},
            "spec": {"image": "hand-edited:9", "port": 8080},
        })),
    )
    .await
    .unwrap();
    eventually("the hand edit to be put back", WAIT, || async {
        (apps.get("notes").await.ok()?.spec.image == "notes:2").then_some(())
    })
    .await;

    // Removal prunes.
    work.remove("deploy/more").unwrap();
    let third = work.commit_and_push("chore: no shop").unwrap();
    let synced = gitops::applied(&env.client, env.ns.name(), "apps", &third).await;
    assert_eq!(synced.status.unwrap().inventory.len(), 1);
    eventually("shop to be pruned", WAIT, || gone_or_going(&apps, "shop")).await;
    assert!(apps.get_opt("notes").await.unwrap().is_some());
    let events = events_of(&env, "apps").await;
    assert!(
        events.iter().any(|e| e.reason.as_deref() == Some("Applied")
            && e.message.as_deref().unwrap_or_default().contains("pruned")),
        "an Applied Event names what was pruned: {:?}",
        events.iter().map(|e| &e.message).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_bad_commit_applies_nothing_and_the_previous_one_stays() {
    let env = env("gitops-bad").await;
    env.git
        .create("apps", &[("deploy/notes.yaml", &app_yaml("notes", "notes:1"))])
        .unwrap();
    let work = WorkTree::clone(&env.git.url("apps"), &env.dir.path().join("work")).unwrap();
    let first = work.head().unwrap();
    source(&env, "apps", "apps", serde_json::json!({})).await;
    gitops::applied(&env.client, env.ns.name(), "apps", &first).await;
    let apps: Api<App> = Api::namespaced(env.client.clone(), env.ns.name());

    // Ten files, one of them refused by the apiserver's schema.
    for i in 0..10 {
        work.write(
            &format!("deploy/app-{i}.yaml"),
            &app_yaml(&format!("app-{i}"), "x:1"),
        )
        .unwrap();
    }
    work.write(
        "deploy/app-7.yaml",
        "apiVersion: winky.dev/v1alpha1\nkind: App\nmetadata:\n  name: app-7\nspec:\n  image: x:1\n  port: 8080\n  replicas: -3\n",
    )
    .unwrap();
    work.write("deploy/notes.yaml", &app_yaml("notes", "notes:2"))
        .unwrap();
    let bad = work.commit_and_push("feat: ten apps, one broken").unwrap();
    let stalled = gitops::condition(
        &env.client,
        env.ns.name(),
        "apps",
        "Stalled",
        "True",
        Some("DryRunFailed"),
    )
    .await;
    let text = gitops::message(&stalled, "Stalled");
    assert!(
        text.contains("deploy/app-7.yaml:1"),
        "names the file and line: {text}"
    );
    assert!(
        text.contains("replicas"),
        "carries the apiserver's message: {text}"
    );
    assert!(
        text.contains(&format!("commit {} stays applied", &first[..12])),
        "{text}"
    );
    let status = stalled.status.unwrap();
    assert_eq!(status.last_applied_commit.as_deref(), Some(first.as_str()));
    assert_eq!(status.last_attempted_commit.as_deref(), Some(bad.as_str()));
    assert_eq!(status.inventory.len(), 1);
    for i in 0..10 {
        assert!(
            apps.get_opt(&format!("app-{i}")).await.unwrap().is_none(),
            "app-{i} was applied"
        );
    }
    assert_eq!(
        apps.get("notes").await.unwrap().spec.image,
        "notes:1",
        "nothing of the commit"
    );
    eventually("a Warning Event with the reason", WAIT, || async {
        events_of(&env, "apps")
            .await
            .iter()
            .any(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("DryRunFailed"))
            .then_some(())
    })
    .await;

    // A kind a repository may not hold refuses the commit too.
    work.remove("deploy/app-7.yaml").unwrap();
    work.write(
        "deploy/zz-secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: leaked\nstringData:\n  a: b\n",
    )
    .unwrap();
    work.commit_and_push("chore: a secret").unwrap();
    let stalled = gitops::condition(
        &env.client,
        env.ns.name(),
        "apps",
        "Stalled",
        "True",
        Some("KindNotAllowed"),
    )
    .await;
    assert!(gitops::message(&stalled, "Stalled").contains("deploy/zz-secret.yaml:1: Secret (v1)"));

    // A path that is gone, and one that holds no manifests, never prune
    // everything unless that is allowed.
    work.remove("deploy").unwrap();
    work.write("README.md", "moved elsewhere\n").unwrap();
    work.commit_and_push("chore: move the manifests").unwrap();
    let stalled = gitops::condition(
        &env.client,
        env.ns.name(),
        "apps",
        "Stalled",
        "True",
        Some("PathNotFound"),
    )
    .await;
    assert!(
        gitops::message(&stalled, "Stalled").contains("there is no directory deploy/"),
        "{}",
        gitops::message(&stalled, "Stalled")
    );
    work.write("deploy/README.md", "manifests come back soon\n")
        .unwrap();
    work.commit_and_push("docs: placeholder").unwrap();
    let stalled = gitops::condition(
        &env.client,
        env.ns.name(),
        "apps",
        "Stalled",
        "True",
        Some("EmptySource"),
    )
    .await;
    assert!(
        gitops::message(&stalled, "Stalled").contains("set spec.allowEmpty"),
        "{}",
        gitops::message(&stalled, "Stalled")
    );
    assert!(
        apps.get_opt("notes").await.unwrap().is_some(),
        "nothing was pruned"
    );

    // The fix is applied.
    work.write("deploy/notes.yaml", &app_yaml("notes", "notes:3"))
        .unwrap();
    let fixed = work.commit_and_push("fix: notes 3").unwrap();
    gitops::applied(&env.client, env.ns.name(), "apps", &fixed).await;
    gitops::condition(&env.client, env.ns.name(), "apps", "Ready", "True", None).await;
    assert_eq!(apps.get("notes").await.unwrap().spec.image, "notes:3");
}

#[tokio::test]
async fn a_second_source_cannot_take_over_and_a_remote_that_is_down_prunes_nothing() {
    let env = env("gitops-owner").await;
    let files = [("deploy/notes.yaml", app_yaml("notes", "notes:1"))];
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    env.git.create("first", &files).unwrap();
    env.git.create("second", &files).unwrap();
    source(&env, "first", "first", serde_json::json!({})).await;
    gitops::condition(&env.client, env.ns.name(), "first", "Ready", "True", None).await;
    source(&env, "second", "second", serde_json::json!({})).await;
    let stalled = gitops::condition(
        &env.client,
        env.ns.name(),
        "second",
        "Stalled",
        "True",
        Some("OwnershipConflict"),
    )
    .await;
    let text = gitops::message(&stalled, "Stalled");
    assert!(
        text.contains(&format!("belongs to another GitSource ({}/first)", env.ns.name())),
        "{text}"
    );
    let apps: Api<App> = Api::namespaced(env.client.clone(), env.ns.name());
    let notes = apps.get("notes").await.unwrap();
    assert_eq!(
        notes.annotations()[GIT_SOURCE_ANNOTATION],
        format!("{}/first", env.ns.name())
    );

    // The remote goes away: the source reports it and retries; nothing is pruned.
    let Env { git, client, ns, .. } = env;
    drop(git);
    let api: Api<GitSource> = Api::namespaced(client.clone(), ns.name());
    let failed = eventually("FetchFailed", WAIT, || async {
        let source = api.get("first").await.ok()?;
        let c = source
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")?
            .clone();
        (c.reason == "FetchFailed").then_some(source)
    })
    .await;
    let reconciling = failed
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Reconciling")
        .unwrap();
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("True", "ProgressingWithRetry")
    );
    assert_eq!(failed.status.unwrap().inventory.len(), 1, "the inventory is kept");
    assert!(
        apps.get_opt("notes").await.unwrap().is_some(),
        "nothing was pruned"
    );
}

#[tokio::test]
async fn a_source_creates_its_own_namespaces_and_never_adopts_anothers() {
    let env = env("gitops-ns").await;
    // A namespace of its own, named after the test's so that runs never collide.
    let own = format!("{}-team", env.ns.name());
    let namespace_yaml = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {own}\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n"
    );
    let app_in_own =
        app_yaml("notes", "notes:1").replace("name: notes\n", &format!("name: notes\n  namespace: {own}\n"));
    env.git
        .create(
            "apps",
            &[
                ("deploy/ns.yaml", &namespace_yaml),
                ("deploy/notes.yaml", &app_in_own),
            ],
        )
        .unwrap();
    source(&env, "apps", "apps", serde_json::json!({})).await;
    gitops::condition(&env.client, env.ns.name(), "apps", "Ready", "True", None).await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(env.client.clone());
    let created = namespaces.get(&own).await.unwrap();
    assert_eq!(
        created.annotations()[GIT_SOURCE_ANNOTATION],
        format!("{}/apps", env.ns.name())
    );
    let apps_there: Api<App> = Api::namespaced(env.client.clone(), &own);
    assert_eq!(apps_there.get("notes").await.unwrap().spec.image, "notes:1");

    // Another source declaring the same Namespace, or one it did not create, is refused.
    env.git
        .create("other", &[("deploy/ns.yaml", &namespace_yaml)])
        .unwrap();
    source(&env, "other", "other", serde_json::json!({})).await;
    let stalled = gitops::condition(
        &env.client,
        env.ns.name(),
        "other",
        "Stalled",
        "True",
        Some("OwnershipConflict"),
    )
    .await;
    assert!(gitops::message(&stalled, "Stalled").contains(&format!(
        "Namespace {own} already exists and was not created by this GitSource"
    )));
    let default_ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n";
    env.git.create("grab", &[("deploy/ns.yaml", default_ns)]).unwrap();
    source(&env, "grab", "grab", serde_json::json!({})).await;
    gitops::condition(
        &env.client,
        env.ns.name(),
        "grab",
        "Stalled",
        "True",
        Some("OwnershipConflict"),
    )
    .await;
    assert!(
        namespaces
            .get("default")
            .await
            .unwrap()
            .annotations()
            .get(GIT_SOURCE_ANNOTATION)
            .is_none()
    );

    // Removed from the repository, its Namespace is pruned with it.
    let work = WorkTree::clone(&env.git.url("apps"), &env.dir.path().join("work")).unwrap();
    work.remove("deploy/ns.yaml").unwrap();
    work.remove("deploy/notes.yaml").unwrap();
    work.write("deploy/README.md", "empty for now\n").unwrap();
    let emptied = work.commit_and_push("chore: no more team").unwrap();
    // An empty source prunes only with allowEmpty.
    gitops::condition(
        &env.client,
        env.ns.name(),
        "apps",
        "Stalled",
        "True",
        Some("EmptySource"),
    )
    .await;
    source(&env, "apps", "apps", serde_json::json!({"allowEmpty": true})).await;
    gitops::applied(&env.client, env.ns.name(), "apps", &emptied).await;
    eventually("the namespace to be pruned", WAIT, || {
        gone_or_going(&namespaces, &own)
    })
    .await;
}

#[tokio::test]
async fn a_suspended_source_applies_nothing_until_resumed() {
    let env = env("gitops-suspend").await;
    env.git
        .create("apps", &[("deploy/notes.yaml", &app_yaml("notes", "notes:1"))])
        .unwrap();
    let work = WorkTree::clone(&env.git.url("apps"), &env.dir.path().join("work")).unwrap();
    source(&env, "apps", "apps", serde_json::json!({})).await;
    gitops::applied(&env.client, env.ns.name(), "apps", &work.head().unwrap()).await;

    source(&env, "apps", "apps", serde_json::json!({"suspend": true})).await;
    gitops::condition(
        &env.client,
        env.ns.name(),
        "apps",
        "Reconciling",
        "False",
        Some("Suspended"),
    )
    .await;
    work.write("deploy/notes.yaml", &app_yaml("notes", "notes:2"))
        .unwrap();
    let second = work.commit_and_push("feat: notes 2").unwrap();
    // Three intervals pass: nothing is fetched or applied.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let apps: Api<App> = Api::namespaced(env.client.clone(), env.ns.name());
    assert_eq!(apps.get("notes").await.unwrap().spec.image, "notes:1");
    let api: Api<GitSource> = Api::namespaced(env.client.clone(), env.ns.name());
    assert_ne!(
        api.get("apps")
            .await
            .unwrap()
            .status
            .unwrap()
            .last_fetched_commit
            .as_deref(),
        Some(second.as_str())
    );

    source(&env, "apps", "apps", serde_json::json!({"suspend": false})).await;
    gitops::applied(&env.client, env.ns.name(), "apps", &second).await;
    assert_eq!(apps.get("notes").await.unwrap().spec.image, "notes:2");
}

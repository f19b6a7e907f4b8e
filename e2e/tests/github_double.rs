//! The GitHub API double, driven through octocrab the way the operator drives
//! GitHub: pull requests of a real bare repository served by `git daemon`
//! (their files computed by git, found by their merge commit), commit
//! statuses, and comments written once then updated. Every answer is checked
//! against GitHub's vendored OpenAPI description.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use octocrab::models::repos::{DiffEntry, DiffEntryStatus};
use octocrab::models::{CommentId, IssueState, StatusState};
use octocrab::{GitHubError, Octocrab, Page};
use serde_json::{Value, json};
use winky_e2e::git::{GitServer, git};
use winky_e2e::github::{DEFAULT_TOKEN_LOGIN, GitHubDouble, validate_exchanges};
use winky_e2e::workspace_root;

const TOKEN: &str = "ghs_GitHubDoubleTestTokenNotARealOne0123";
const BRANCH: &str = "winky/feat-notes-tags-7f3a";

const APP: &str = "name: notes\nreplicas: 1\nimage: notes:1\n";
const GUIDE: &str = "# Guide\n\nOne.\nTwo.\nThree.\nFour.\nFive.\nSix.\nSeven.\nEight.\n";

fn scratch(name: &str) -> PathBuf {
    let dir = workspace_root()
        .join("target/e2e/github_double")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A repository `acme/notes` on a real git server, a clone to change it, and
/// the double in front of it with an octocrab client holding the right token.
struct Fixture {
    _server: GitServer,
    work: PathBuf,
    github: GitHubDouble,
    octo: Octocrab,
}

impl Fixture {
    async fn new(name: &str) -> Self {
        let dir = scratch(name);
        let server = GitServer::start(&dir).unwrap();
        let bare = server
            .create(
                "notes",
                &[
                    ("README.md", "# notes\n"),
                    ("app.yaml", APP),
                    ("docs/old-guide.md", GUIDE),
                    ("gone.txt", "bye\n"),
                ],
            )
            .unwrap();
        let work = dir.join("work");
        git(
            &dir,
            &["clone", "--quiet", &server.url("notes"), work.to_str().unwrap()],
        )
        .unwrap();
        let github = GitHubDouble::start("acme", "notes", TOKEN, &bare).await.unwrap();
        let octo = client(github.url(), Some(TOKEN));
        Self {
            _server: server,
            work,
            github,
            octo,
        }
    }

    fn git(&self, args: &[&str]) -> String {
        git(&self.work, args).unwrap().trim().to_string()
    }

    fn write(&self, path: &str, content: &str) {
        let file = self.work.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }

    /// Commits everything and pushes the current branch to `branch`; returns the commit.
    fn commit_and_push(&self, message: &str, branch: &str) -> String {
        self.git(&["add", "--all"]);
        self.git(&["commit", "--quiet", "-m", message]);
        self.git(&["push", "--quiet", "origin", &format!("HEAD:refs/heads/{branch}")]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// The feature branch: one file modified, one added, one removed, one
    /// renamed unchanged. Returns its commit; the work tree is left on it.
    fn push_feature(&self) -> String {
        self.git(&["checkout", "--quiet", "-b", BRANCH, "origin/main"]);
        self.write("app.yaml", &APP.replace("replicas: 1", "replicas: 3"));
        self.write("functions/tags.yaml", "kind: Function\nname: tags\n");
        self.git(&["rm", "--quiet", "gone.txt"]);
        self.git(&["mv", "docs/old-guide.md", "docs/guide.md"]);
        self.commit_and_push("feat(notes): tags", BRANCH)
    }

    /// Merges `branch` into main with a merge commit, as the merge button
    /// does, and pushes; returns the merge commit.
    fn merge_into_main(&self, branch: &str, number: u64) -> String {
        self.git(&["fetch", "--quiet", "origin"]);
        self.git(&["checkout", "--quiet", "-B", "main", "origin/main"]);
        let message = format!("Merge pull request #{number} from acme/{branch}");
        self.git(&[
            "merge",
            "--quiet",
            "--no-ff",
            "-m",
            &message,
            &format!("origin/{branch}"),
        ]);
        self.git(&["push", "--quiet", "origin", "HEAD:refs/heads/main"]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn main_tip(&self) -> String {
        self.git(&["ls-remote", "origin", "refs/heads/main"])
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }

    fn assert_valid(&self) {
        let exchanges = self.github.exchanges();
        assert!(!exchanges.is_empty());
        let problems = validate_exchanges(&exchanges).unwrap();
        assert!(problems.is_empty(), "{problems:#?}");
    }
}

fn client(url: &str, token: Option<&str>) -> Octocrab {
    let builder = Octocrab::builder().base_uri(url).unwrap();
    match token {
        Some(token) => builder.personal_token(token.to_string()).build().unwrap(),
        None => builder.build().unwrap(),
    }
}

/// The error GitHub answered, from an octocrab result.
fn github_error<T: std::fmt::Debug>(result: octocrab::Result<T>) -> GitHubError {
    match result {
        Err(octocrab::Error::GitHub { source, .. }) => *source,
        other => panic!("expected an error answer from GitHub, got {other:?}"),
    }
}

fn by_name(files: Vec<DiffEntry>) -> BTreeMap<String, DiffEntry> {
    files.into_iter().map(|f| (f.filename.clone(), f)).collect()
}

fn blob(work: &Path, spec: &str) -> String {
    git(work, &["rev-parse", spec]).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_request_files_are_the_branch_diff() {
    let f = Fixture::new("files").await;
    let main_before = f.main_tip();
    let head = f.push_feature();
    let number = f.github.open_pull(BRANCH, "main", "alice", "feat(notes): tags");
    assert_eq!(number, 1);
    let pulls = f.octo.pulls("acme", "notes");

    let files = by_name(pulls.list_files(number).await.unwrap().items);
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["app.yaml", "docs/guide.md", "functions/tags.yaml", "gone.txt"],
    );

    let app = &files["app.yaml"];
    assert_eq!(app.status, DiffEntryStatus::Modified);
    assert_eq!((app.additions, app.deletions, app.changes), (1, 1, 2));
    assert_eq!(
        app.patch.as_deref(),
        Some("@@ -1,3 +1,3 @@\n name: notes\n-replicas: 1\n+replicas: 3\n image: notes:1")
    );
    assert_eq!(
        app.sha.as_deref(),
        Some(blob(&f.work, &format!("{head}:app.yaml")).as_str())
    );

    let added = &files["functions/tags.yaml"];
    assert_eq!(added.status, DiffEntryStatus::Added);
    assert_eq!((added.additions, added.deletions, added.changes), (2, 0, 2));
    assert_eq!(
        added.patch.as_deref(),
        Some("@@ -0,0 +1,2 @@\n+kind: Function\n+name: tags")
    );
    assert_eq!(
        added.contents_url.as_str(),
        format!("https://api.github.com/repos/acme/notes/contents/functions/tags.yaml?ref={head}")
    );

    let removed = &files["gone.txt"];
    assert_eq!(removed.status, DiffEntryStatus::Removed);
    assert_eq!((removed.additions, removed.deletions), (0, 1));
    assert_eq!(removed.patch.as_deref(), Some("@@ -1 +0,0 @@\n-bye"));
    assert_eq!(
        removed.sha.as_deref(),
        Some(blob(&f.work, &format!("{main_before}:gone.txt")).as_str()),
        "a removed file names the blob it removed"
    );

    let renamed = &files["docs/guide.md"];
    assert_eq!(renamed.status, DiffEntryStatus::Renamed);
    assert_eq!(renamed.previous_filename.as_deref(), Some("docs/old-guide.md"));
    assert_eq!((renamed.additions, renamed.deletions), (0, 0));
    assert_eq!(renamed.patch, None, "a pure rename has no hunks");

    // Pages: per_page is honoured and the Link header leads to the rest.
    let route = format!("/repos/acme/notes/pulls/{number}/files?per_page=3");
    let first: Page<DiffEntry> = f.octo.get(&route, None::<&()>).await.unwrap();
    assert_eq!(first.items.len(), 3);
    assert!(first.next.is_some(), "a Link to the next page");
    let all = f.octo.all_pages(first).await.unwrap();
    assert_eq!(
        by_name(all).keys().collect::<Vec<_>>(),
        files.keys().collect::<Vec<_>>()
    );

    // The pull request itself, counted by git.
    let pull = pulls.get(number).await.unwrap();
    assert_eq!(pull.number, number);
    assert_eq!(pull.state, Some(IssueState::Open));
    assert_eq!(pull.merged, Some(false));
    assert!(pull.merged_at.is_none() && pull.merged_by.is_none() && pull.merge_commit_sha.is_none());
    assert_eq!(pull.user.as_ref().unwrap().login, "alice");
    assert_eq!(
        (pull.head.ref_field.as_str(), pull.head.sha.as_str()),
        (BRANCH, head.as_str())
    );
    assert_eq!(
        (pull.base.ref_field.as_str(), pull.base.sha.as_str()),
        ("main", main_before.as_str())
    );
    assert_eq!(pull.title.as_deref(), Some("feat(notes): tags"));
    assert_eq!(
        (pull.commits, pull.additions, pull.deletions, pull.changed_files),
        (Some(1), Some(3), Some(2), Some(4))
    );

    // The head follows the branch while the pull request is open.
    f.write(
        "functions/tags.yaml",
        "kind: Function\nname: tags\nmemory: 256Mi\n",
    );
    let second = f.commit_and_push("feat(notes): tags get memory", BRANCH);
    let pull = pulls.get(number).await.unwrap();
    assert_eq!(pull.head.sha, second);
    assert_eq!((pull.commits, pull.additions), (Some(2), Some(4)));

    f.assert_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merged_pull_request_is_found_by_its_merge_commit() {
    let f = Fixture::new("merged").await;
    let main_before = f.main_tip();
    let head = f.push_feature();
    let number = f.github.open_pull(BRANCH, "main", "alice", "feat(notes): tags");
    // Another pull request, still open.
    f.git(&["checkout", "--quiet", "-b", "winky/fix-readme-1", "origin/main"]);
    f.write("README.md", "# notes\n\nFixed.\n");
    let other_head = f.commit_and_push("fix: readme", "winky/fix-readme-1");
    let other = f
        .github
        .open_pull("winky/fix-readme-1", "main", "dave", "fix: readme");
    assert_eq!(other, number + 1);
    let repos = f.octo.repos("acme", "notes");
    let numbers = |page: Page<octocrab::models::pulls::PullRequest>| -> Vec<u64> {
        page.items.iter().map(|p| p.number).collect()
    };

    // Before the merge, the branch's commit belongs to the open pull request only.
    assert_eq!(
        numbers(repos.list_pulls(head.clone()).send().await.unwrap()),
        [number]
    );

    let merge = f.merge_into_main(BRANCH, number);
    f.github.merge_pull(number, "bob", &merge);

    let found = repos.list_pulls(merge.clone()).send().await.unwrap().items;
    assert_eq!(found.len(), 1, "{found:#?}");
    let pull = &found[0];
    assert_eq!(pull.number, number);
    assert_eq!(pull.state, Some(IssueState::Closed));
    assert_eq!(pull.merge_commit_sha.as_deref(), Some(merge.as_str()));
    assert!(pull.merged_at.is_some());
    assert_eq!(pull.user.as_ref().unwrap().login, "alice");
    // The branch's own commit is on main now: it too came with that pull request.
    assert_eq!(
        numbers(repos.list_pulls(head.clone()).send().await.unwrap()),
        [number]
    );
    // The open pull request is found by its head.
    assert_eq!(
        numbers(repos.list_pulls(other_head).send().await.unwrap()),
        [other]
    );
    // A commit pushed to main directly came with no pull request.
    f.git(&["checkout", "--quiet", "-B", "main", "origin/main"]);
    f.write("README.md", "# notes, pushed directly\n");
    let direct = f.commit_and_push("chore: straight to main", "main");
    assert!(repos.list_pulls(direct).send().await.unwrap().items.is_empty());
    // An unknown commit is GitHub's 422.
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let e = github_error(repos.list_pulls(unknown.into()).send().await);
    assert_eq!(e.status_code.as_u16(), 422);
    assert_eq!(e.message, format!("No commit found for SHA: {unknown}"));

    // Who merged it, and what it changed, stay.
    let pulls = f.octo.pulls("acme", "notes");
    let pull = pulls.get(number).await.unwrap();
    assert_eq!(pull.merged, Some(true));
    assert_eq!(pull.merged_by.as_ref().unwrap().login, "bob");
    assert_eq!(pull.user.as_ref().unwrap().login, "alice");
    assert_eq!(pull.merge_commit_sha.as_deref(), Some(merge.as_str()));
    assert_eq!(pull.head.sha, head);
    assert_eq!(pull.base.sha, main_before, "the base before the merge");
    assert_eq!(pull.changed_files, Some(4));
    let files = pulls.list_files(number).await.unwrap().items;
    assert_eq!(
        files.len(),
        4,
        "a merged pull request keeps its files: {files:#?}"
    );
    // The other one is untouched.
    let open = pulls.get(other).await.unwrap();
    assert_eq!((open.merged, open.state), (Some(false), Some(IssueState::Open)));

    let e = github_error(pulls.get(99).await);
    assert_eq!((e.status_code.as_u16(), e.message.as_str()), (404, "Not Found"));
    let e = github_error(pulls.list_files(99).await);
    assert_eq!(e.status_code.as_u16(), 404);

    f.assert_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_statuses_are_recorded() {
    let f = Fixture::new("statuses").await;
    let head = f.push_feature();
    let repos = f.octo.repos("acme", "notes");

    let status = repos
        .create_status(head.clone(), StatusState::Failure)
        .context("winky/policy".into())
        .description("Branch does not match winky/<type>-<desc>-<id>".into())
        .target("https://winky.example/policy/1".into())
        .send()
        .await
        .unwrap();
    assert_eq!(status.state, StatusState::Failure);
    assert_eq!(status.context.as_deref(), Some("winky/policy"));
    assert_eq!(status.creator.as_ref().unwrap().login, DEFAULT_TOKEN_LOGIN);
    assert_eq!(
        status.url.as_deref(),
        Some(format!("https://api.github.com/repos/acme/notes/statuses/{head}").as_str())
    );
    // A short sha names the same commit; no context is GitHub's "default".
    repos
        .create_status(head[..12].to_string(), StatusState::Pending)
        .send()
        .await
        .unwrap();

    // A state GitHub does not know.
    let e = github_error(
        f.octo
            .post::<_, Value>(
                format!("/repos/acme/notes/statuses/{head}"),
                Some(&json!({"state": "approved", "context": "winky/policy"})),
            )
            .await,
    );
    assert_eq!(
        (e.status_code.as_u16(), e.message.as_str()),
        (422, "Validation Failed")
    );
    assert_eq!(e.errors.as_ref().unwrap()[0]["field"], "state");
    // A commit the repository does not have.
    let e = github_error(
        repos
            .create_status(
                "fedcba9876543210fedcba9876543210fedcba98".into(),
                StatusState::Success,
            )
            .send()
            .await,
    );
    assert_eq!(e.status_code.as_u16(), 422);
    assert!(e.message.starts_with("No commit found for SHA"), "{}", e.message);

    let statuses = f.github.statuses();
    assert_eq!(statuses.len(), 2, "{statuses:#?}");
    assert_eq!(statuses[0].sha, head);
    assert_eq!(statuses[0].state, "failure");
    assert_eq!(statuses[0].context, "winky/policy");
    assert_eq!(
        statuses[0].target_url.as_deref(),
        Some("https://winky.example/policy/1")
    );
    assert_eq!(statuses[0].creator, DEFAULT_TOKEN_LOGIN);
    assert_eq!(statuses[1].sha, head, "the short sha resolved to the commit");
    assert_eq!(
        (statuses[1].state.as_str(), statuses[1].context.as_str()),
        ("pending", "default")
    );
    assert_eq!(statuses[1].description, None);

    let rejected = f
        .github
        .exchanges()
        .into_iter()
        .find(|e| e.request_body.contains("approved"))
        .unwrap();
    assert_eq!(
        (rejected.operation, rejected.status),
        ("repos/create-commit-status", 422)
    );

    f.assert_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_is_written_once_then_updated() {
    let f = Fixture::new("comments").await;
    f.push_feature();
    let number = f.github.open_pull(BRANCH, "main", "alice", "feat(notes): tags");
    let issues = f.octo.issues("acme", "notes");

    let comment = issues
        .create_comment(number, "winky: policy passed")
        .await
        .unwrap();
    assert_eq!(comment.user.login, DEFAULT_TOKEN_LOGIN);
    assert_eq!(comment.user.r#type, "Bot");
    assert_eq!(comment.body.as_deref(), Some("winky: policy passed"));
    assert_eq!(
        comment.html_url.as_str(),
        format!(
            "https://github.com/acme/notes/pull/{number}#issuecomment-{}",
            comment.id
        )
    );

    let updated = issues
        .update_comment(comment.id, "winky: policy passed, emulator passed")
        .await
        .unwrap();
    assert_eq!(updated.id, comment.id);
    assert_eq!(
        updated.body.as_deref(),
        Some("winky: policy passed, emulator passed")
    );

    let listed = issues.list_comments(number).send().await.unwrap().items;
    assert_eq!(listed.len(), 1, "updated, not duplicated: {listed:#?}");
    assert_eq!(listed[0].id, comment.id);
    assert_eq!(
        listed[0].body.as_deref(),
        Some("winky: policy passed, emulator passed")
    );
    let kept = f.github.comments(number);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].body, "winky: policy passed, emulator passed");
    assert_eq!(kept[0].user, DEFAULT_TOKEN_LOGIN);

    // A person's ChatOps comment, and a token owned by someone else.
    let approval = f.github.add_comment(number, "carol", "/approve staging");
    f.github.set_token_login("winky-ci");
    assert_eq!(f.github.token_login(), "winky-ci");
    let by_ci = issues.create_comment(number, "noted").await.unwrap();
    assert_eq!(by_ci.user.login, "winky-ci");
    assert_eq!(by_ci.user.r#type, "User");
    let listed = issues.list_comments(number).send().await.unwrap().items;
    let authors: Vec<(u64, &str)> = listed.iter().map(|c| (c.id.0, c.user.login.as_str())).collect();
    assert_eq!(
        authors,
        [
            (comment.id.0, DEFAULT_TOKEN_LOGIN),
            (approval, "carol"),
            (by_ci.id.0, "winky-ci")
        ]
    );

    // Errors: an unknown comment, an unknown pull request, a comment without a body.
    let e = github_error(issues.update_comment(CommentId(42), "nope").await);
    assert_eq!((e.status_code.as_u16(), e.message.as_str()), (404, "Not Found"));
    let e = github_error(issues.create_comment(99, "nope").await);
    assert_eq!(e.status_code.as_u16(), 404);
    let e = github_error(issues.list_comments(99).send().await);
    assert_eq!(e.status_code.as_u16(), 404);
    let e = github_error(
        f.octo
            .post::<_, Value>(
                format!("/repos/acme/notes/issues/{number}/comments"),
                Some(&json!({"text": "nope"})),
            )
            .await,
    );
    assert_eq!(e.status_code.as_u16(), 422);
    assert_eq!(
        f.github.comments(number).len(),
        3,
        "nothing written by the refusals"
    );

    f.assert_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_and_another_repository_are_refused() {
    let f = Fixture::new("refusals").await;
    let head = f.push_feature();
    let number = f.github.open_pull(BRANCH, "main", "alice", "feat(notes): tags");
    let comment = f.github.add_comment(number, "carol", "/hold");

    let wrong = client(f.github.url(), Some("ghs_NotTheTokenOfThisRepository000000000"));
    let anonymous = client(f.github.url(), None);
    let attempts = |octo: &Octocrab, repo: &str| {
        let (octo, repo, head) = (octo.clone(), repo.to_string(), head.clone());
        async move {
            vec![
                github_error(octo.pulls("acme", &repo).get(number).await),
                github_error(octo.pulls("acme", &repo).list_files(number).await),
                github_error(octo.repos("acme", &repo).list_pulls(head.clone()).send().await),
                github_error(
                    octo.repos("acme", &repo)
                        .create_status(head, StatusState::Success)
                        .send()
                        .await,
                ),
                github_error(octo.issues("acme", &repo).list_comments(number).send().await),
                github_error(octo.issues("acme", &repo).create_comment(number, "x").await),
                github_error(
                    octo.issues("acme", &repo)
                        .update_comment(CommentId(comment), "x")
                        .await,
                ),
            ]
        }
    };
    for octo in [&wrong, &anonymous] {
        for e in attempts(octo, "notes").await {
            assert_eq!(
                (e.status_code.as_u16(), e.message.as_str()),
                (401, "Bad credentials")
            );
            assert_eq!(
                e.documentation_url.as_deref(),
                Some("https://docs.github.com/rest")
            );
        }
    }
    for e in attempts(&f.octo, "elsewhere").await {
        assert_eq!((e.status_code.as_u16(), e.message.as_str()), (404, "Not Found"));
        assert!(
            e.documentation_url
                .as_deref()
                .unwrap()
                .starts_with("https://docs.github.com/rest/"),
            "{e:?}"
        );
    }

    // Nothing was written, and every refusal was recorded.
    assert!(f.github.statuses().is_empty());
    assert_eq!(f.github.comments(number).len(), 1);
    assert_eq!(f.github.comments(number)[0].body, "/hold");
    let exchanges = f.github.exchanges();
    assert_eq!(exchanges.len(), 3 * 7);
    let mut operations: Vec<&str> = exchanges.iter().map(|e| e.operation).collect();
    operations.sort_unstable();
    operations.dedup();
    assert_eq!(
        operations,
        [
            "issues/create-comment",
            "issues/list-comments",
            "issues/update-comment",
            "pulls/get",
            "pulls/list-files",
            "repos/create-commit-status",
            "repos/list-pull-requests-associated-with-commit",
        ]
    );
    f.assert_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_catches_bad_bodies_and_unserved_routes() {
    let f = Fixture::new("validation").await;
    let head = f.push_feature();
    let number = f.github.open_pull(BRANCH, "main", "alice", "feat(notes): tags");
    let comment = f
        .octo
        .issues("acme", "notes")
        .create_comment(number, "hello")
        .await
        .unwrap();
    f.octo
        .repos("acme", "notes")
        .create_status(head, StatusState::Success)
        .send()
        .await
        .unwrap();
    f.assert_valid();
    let exchanges = f.github.exchanges();
    let find = |operation: &str| {
        exchanges
            .iter()
            .find(|e| e.operation == operation)
            .unwrap()
            .clone()
    };

    // A request body the operation's request schema refuses, though accepted.
    let mut bad_comment = find("issues/create-comment");
    bad_comment.request_body = r#"{"bdy": "hello"}"#.into();
    let mut bad_status = find("repos/create-commit-status");
    bad_status.request_body = r#"{"state": "approved"}"#.into();
    // A response missing what the schema requires.
    let mut bad_response = find("repos/create-commit-status");
    bad_response.response.as_object_mut().unwrap().remove("creator");
    let problems = validate_exchanges(&[bad_comment, bad_status, bad_response]).unwrap();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].starts_with("issues/create-comment request"),
        "{problems:#?}"
    );
    assert!(
        problems[1].starts_with("repos/create-commit-status request"),
        "{problems:#?}"
    );
    assert!(
        problems[2].starts_with("repos/create-commit-status 201 response"),
        "{problems:#?}"
    );

    // A route the double does not serve answers 404 and is reported.
    let e = github_error(f.octo.issues("acme", "notes").get_comment(comment.id).await);
    assert_eq!(e.status_code.as_u16(), 404);
    let problems = validate_exchanges(&f.github.exchanges()).unwrap();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains(&format!("GET /repos/acme/notes/issues/comments/{}", comment.id))
            && problems[0].contains("does not serve"),
        "{problems:#?}"
    );
    // The double found it as it recorded the exchange, too: dropping it
    // would fail the test unless the problem is taken.
    assert_eq!(f.github.take_problems(), problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_opened_through_the_api_is_the_token_owner_s() {
    let f = Fixture::new("create").await;
    let head = f.push_feature();
    let pull = f
        .octo
        .pulls("acme", "notes")
        .create("feat(notes): tags", BRANCH, "main")
        .draft(true)
        .send()
        .await
        .unwrap();
    assert_eq!(pull.user.as_ref().unwrap().login, DEFAULT_TOKEN_LOGIN);
    assert_eq!(pull.head.sha, head);
    assert_eq!(pull.changed_files, Some(4));
    // The same pull request, seen by number and by its head commit.
    let again = f.octo.pulls("acme", "notes").get(pull.number).await.unwrap();
    assert_eq!((again.id, again.draft), (pull.id, Some(true)));
    let found = f
        .octo
        .repos("acme", "notes")
        .list_pulls(head)
        .send()
        .await
        .unwrap();
    assert_eq!(
        found.items.iter().map(|p| p.number).collect::<Vec<_>>(),
        [pull.number]
    );
    assert_eq!(f.github.pulls().len(), 1);
    f.assert_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "head winky/feat-never-pushed-1 does not exist")]
async fn seeding_a_pull_request_needs_a_pushed_branch() {
    let f = Fixture::new("unpushed").await;
    f.github
        .open_pull("winky/feat-never-pushed-1", "main", "alice", "never");
}

/// The schema check runs as each exchange is recorded, and dropping the
/// double fails the test that saw a problem, whether or not it asked.
#[tokio::test]
#[should_panic(expected = "break GitHub's schemas")]
async fn a_schema_problem_fails_the_test_even_unasked() {
    let f = Fixture::new("unasked").await;
    let e = github_error(f.octo.issues("acme", "notes").get_comment(1u64.into()).await);
    assert_eq!(e.status_code.as_u16(), 404);
    drop(f);
}

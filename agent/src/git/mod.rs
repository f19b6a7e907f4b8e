//! The git side of a proposal, with git2: read the base, commit on a `winky/`
//! branch, push it — and refuse everything else.
//!
//! The commit is built without touching the working tree or the index: blobs
//! and a tree are written from the base commit plus the generated files, and
//! the branch ref points at the new commit. The checkout the user runs
//! `winky` in stays exactly as it was.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use git2::{
    Cred, CredentialType, Direction, IndexEntry, IndexTime, Oid, PushOptions, RemoteCallbacks, Repository,
};

use crate::branch::BranchName;

pub mod timeouts;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error(
        "{path} is not inside a git repository (run winky in a checkout of the app repository, or pass --repo)"
    )]
    NotARepository { path: String },
    #[error(
        "the working tree has uncommitted changes ({files}); commit or stash them first — winky only commits its own files"
    )]
    Dirty { files: String },
    #[error("refusing to push to {branch}: it is the default branch; winky only pushes winky/ branches")]
    DefaultBranch { branch: String },
    #[error(
        "branch {branch} already exists on {remote}; winky never force-pushes — \
         change the prompt or pass another --seed for a new branch"
    )]
    BranchExists { branch: String, remote: String },
    #[error("{remote} rejected {branch}: {reason}")]
    Rejected {
        remote: String,
        branch: String,
        reason: String,
    },
    #[error("no remote named {0:?} (see `git remote -v`)")]
    NoRemote(String),
    #[error(transparent)]
    Git(#[from] git2::Error),
}

/// Credentials for the remote. The token is never printed.
#[derive(Clone, Default)]
pub struct Credentials {
    pub username: String,
    pub token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

pub struct Repo {
    repo: Repository,
}

impl fmt::Debug for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repo").field("path", &self.repo.path()).finish()
    }
}

impl Repo {
    pub fn open(path: &Path) -> Result<Self, GitError> {
        timeouts::init();
        let repo = Repository::discover(path).map_err(|_| GitError::NotARepository {
            path: path.display().to_string(),
        })?;
        if repo.is_bare() {
            return Err(GitError::NotARepository {
                path: path.display().to_string(),
            });
        }
        Ok(Self { repo })
    }

    pub fn workdir(&self) -> &Path {
        self.repo.workdir().expect("not bare (checked in open)")
    }

    /// Refuses a working tree with modified, staged or untracked files.
    pub fn ensure_clean(&self) -> Result<(), GitError> {
        let mut options = git2::StatusOptions::new();
        options
            .include_untracked(true)
            .include_ignored(false)
            .recurse_untracked_dirs(true);
        let statuses = self.repo.statuses(Some(&mut options))?;
        if statuses.is_empty() {
            return Ok(());
        }
        let mut files: Vec<String> = statuses
            .iter()
            .filter_map(|s| s.path().ok().map(str::to_string))
            .take(5)
            .collect();
        if statuses.len() > files.len() {
            files.push(format!("and {} more", statuses.len() - files.len()));
        }
        Err(GitError::Dirty {
            files: files.join(", "),
        })
    }

    /// The remote's URL with any user information removed, for messages and the audit log.
    pub fn remote_url(&self, remote: &str) -> Result<String, GitError> {
        let found = self
            .repo
            .find_remote(remote)
            .map_err(|_| GitError::NoRemote(remote.into()))?;
        Ok(strip_userinfo(found.url().unwrap_or_default()))
    }

    /// The branch the remote's HEAD names, as last fetched (`refs/remotes/<remote>/HEAD`).
    pub fn remote_default_branch(&self, remote: &str) -> Option<String> {
        let head = self
            .repo
            .find_reference(&format!("refs/remotes/{remote}/HEAD"))
            .ok()?;
        let target = head.symbolic_target().ok()??;
        target
            .strip_prefix(&format!("refs/remotes/{remote}/"))
            .map(str::to_string)
    }

    /// The branch checked out, if any.
    pub fn current_branch(&self) -> Option<String> {
        let head = self.repo.head().ok()?;
        if head.is_branch() {
            head.shorthand().ok().map(str::to_string)
        } else {
            None
        }
    }

    /// The commit to branch from: the remote's default branch when it was
    /// fetched, else the local branch of that name, else HEAD.
    pub fn base_commit(&self, remote: &str, default_branch: &str) -> Result<Oid, GitError> {
        for name in [
            format!("refs/remotes/{remote}/{default_branch}"),
            format!("refs/heads/{default_branch}"),
        ] {
            if let Ok(reference) = self.repo.find_reference(&name)
                && let Ok(commit) = reference.peel_to_commit()
            {
                return Ok(commit.id());
            }
        }
        Ok(self.repo.head()?.peel_to_commit()?.id())
    }

    /// The content at `commit` of each path that exists there.
    pub fn read_files<'a>(
        &self,
        commit: Oid,
        paths: impl IntoIterator<Item = &'a String>,
    ) -> Result<BTreeMap<String, String>, GitError> {
        let tree = self.repo.find_commit(commit)?.tree()?;
        let mut out = BTreeMap::new();
        for path in paths {
            if let Ok(entry) = tree.get_path(Path::new(path))
                && let Ok(blob) = self.repo.find_blob(entry.id())
            {
                out.insert(path.clone(), String::from_utf8_lossy(blob.content()).into_owned());
            }
        }
        Ok(out)
    }

    /// Reads one file at `commit`, if it exists (the pull request template).
    pub fn read_file(&self, commit: Oid, path: &str) -> Option<String> {
        let tree = self.repo.find_commit(commit).ok()?.tree().ok()?;
        let entry = tree.get_path(Path::new(path)).ok()?;
        let blob = self.repo.find_blob(entry.id()).ok()?;
        Some(String::from_utf8_lossy(blob.content()).into_owned())
    }

    /// One commit on `branch`, parent `base`, with `files` written over the
    /// base tree. The local branch must not exist yet.
    pub fn commit(
        &self,
        base: Oid,
        branch: &BranchName,
        files: &BTreeMap<String, String>,
        message: &str,
    ) -> Result<Oid, GitError> {
        if self.repo.find_reference(&branch.refname()).is_ok() {
            return Err(GitError::BranchExists {
                branch: branch.to_string(),
                remote: "this repository".into(),
            });
        }
        let parent = self.repo.find_commit(base)?;
        let mut index = git2::Index::new()?;
        index.read_tree(&parent.tree()?)?;
        for (path, content) in files {
            let blob = self.repo.blob(content.as_bytes())?;
            index.add(&IndexEntry {
                ctime: IndexTime::new(0, 0),
                mtime: IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: 0o100644,
                uid: 0,
                gid: 0,
                file_size: content.len() as u32,
                id: blob,
                flags: path.len().min(0xfff) as u16,
                flags_extended: 0,
                path: path.as_bytes().to_vec(),
            })?;
        }
        let tree = self.repo.find_tree(index.write_tree_to(&self.repo)?)?;
        let signature = self.signature()?;
        let commit = self
            .repo
            .commit(None, &signature, &signature, message, &tree, &[&parent])?;
        self.repo
            .reference(&branch.refname(), commit, false, "winky propose")?;
        Ok(commit)
    }

    fn signature(&self) -> Result<git2::Signature<'static>, GitError> {
        match self.repo.signature() {
            Ok(signature) => Ok(signature.to_owned()),
            Err(_) => Ok(git2::Signature::now(
                "winky-agent",
                "winky-agent@users.noreply.winky.dev",
            )?),
        }
    }

    /// Whether the remote has `branch`, asked over the network (`git ls-remote`).
    pub fn remote_has_branch(
        &self,
        remote: &str,
        branch: &BranchName,
        credentials: &Credentials,
    ) -> Result<bool, GitError> {
        let mut found = self
            .repo
            .find_remote(remote)
            .map_err(|_| GitError::NoRemote(remote.into()))?;
        let connection = found.connect_auth(Direction::Fetch, Some(callbacks(credentials)), None)?;
        let refname = branch.refname();
        Ok(connection.list()?.iter().any(|head| head.name() == refname))
    }

    /// Refuses `branch` when it is the default branch or already exists on
    /// `remote` (asked over the network): pushing it would need a force.
    /// Called once, before the commit, so a refusal has no side effect.
    pub fn ensure_pushable(
        &self,
        remote: &str,
        branch: &BranchName,
        default_branch: &str,
        credentials: &Credentials,
    ) -> Result<(), GitError> {
        if branch.as_str() == default_branch {
            return Err(GitError::DefaultBranch {
                branch: default_branch.into(),
            });
        }
        if self.remote_has_branch(remote, branch, credentials)? {
            return Err(GitError::BranchExists {
                branch: branch.to_string(),
                remote: self.remote_url(remote)?,
            });
        }
        Ok(())
    }

    /// Pushes `branch` to the same name on `remote`, never forced: the
    /// refspec has no `+`, so the remote refuses anything but creating the
    /// branch or fast-forwarding it. Check [`Repo::ensure_pushable`] first.
    pub fn push(&self, remote: &str, branch: &BranchName, credentials: &Credentials) -> Result<(), GitError> {
        let url = self.remote_url(remote)?;
        let refspec = push_refspec(branch);
        let mut rejection: Option<String> = None;
        {
            let mut callbacks = callbacks(credentials);
            callbacks.push_update_reference(|_, status| {
                rejection = status.map(str::to_string);
                Ok(())
            });
            let mut options = PushOptions::new();
            options.remote_callbacks(callbacks);
            let mut found = self
                .repo
                .find_remote(remote)
                .map_err(|_| GitError::NoRemote(remote.into()))?;
            found.push(&[refspec.as_str()], Some(&mut options))?;
        }
        match rejection {
            Some(reason) => Err(GitError::Rejected {
                remote: url,
                branch: branch.to_string(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

/// `refs/heads/B:refs/heads/B`: no leading `+`, so the remote refuses
/// anything but creating the branch or fast-forwarding it.
fn push_refspec(branch: &BranchName) -> String {
    let refname = branch.refname();
    format!("{refname}:{refname}")
}

fn callbacks(credentials: &Credentials) -> RemoteCallbacks<'_> {
    let mut callbacks = RemoteCallbacks::new();
    let mut attempts = 0;
    callbacks.credentials(move |_url, username, allowed| {
        attempts += 1;
        if attempts > 1 {
            // libgit2 asks again after a refused credential; asking forever would hang.
            return Err(git2::Error::from_str("the remote refused the credentials (check WINKY_GIT_TOKEN)"));
        }
        match &credentials.token {
            Some(token) if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                let user = if credentials.username.is_empty() {
                    username.unwrap_or("x-access-token")
                } else {
                    &credentials.username
                };
                Cred::userpass_plaintext(user, token)
            }
            _ => Err(git2::Error::from_str(
                "the remote asks for credentials: set WINKY_GIT_TOKEN (and WINKY_GIT_USERNAME if not x-access-token)",
            )),
        }
    });
    callbacks
}

/// `https://user:token@host/x.git` → `https://host/x.git`.
pub fn strip_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            if path.is_empty() && !rest.contains('/') {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::branch::ChangeType;

    #[test]
    fn user_information_is_stripped_from_urls() {
        assert_eq!(
            strip_userinfo("https://x:ghp_secret@github.com/acme/notes.git"),
            "https://github.com/acme/notes.git"
        );
        assert_eq!(
            strip_userinfo("git://127.0.0.1:9418/notes.git"),
            "git://127.0.0.1:9418/notes.git"
        );
        assert_eq!(strip_userinfo("https://u@h"), "https://h");
        assert_eq!(strip_userinfo("/srv/git/notes.git"), "/srv/git/notes.git");
    }

    #[test]
    fn the_push_refspec_is_never_forced() {
        let branch = BranchName::for_prompt("notes", ChangeType::Feat, 0);
        let refspec = push_refspec(&branch);
        assert!(!refspec.starts_with('+'));
        assert_eq!(refspec, format!("refs/heads/{branch}:refs/heads/{branch}"));
    }

    #[test]
    fn a_commit_adds_files_on_top_of_the_base_without_touching_the_worktree() {
        let dir = tempfile::tempdir().unwrap();
        let raw = Repository::init(dir.path()).unwrap();
        std::fs::write(dir.path().join("README.md"), "hello\n").unwrap();
        let mut index = raw.index().unwrap();
        index.add_path(Path::new("README.md")).unwrap();
        let tree = raw.find_tree(index.write_tree().unwrap()).unwrap();
        let signature = git2::Signature::now("t", "t@example.com").unwrap();
        let base = raw
            .commit(Some("HEAD"), &signature, &signature, "init", &tree, &[])
            .unwrap();
        index.write().unwrap();

        let repo = Repo::open(dir.path()).unwrap();
        repo.ensure_clean().unwrap();
        let branch = BranchName::for_prompt("notes", ChangeType::Feat, 0);
        let files = BTreeMap::from([("deploy/notes/app.yaml".to_string(), "kind: App\n".to_string())]);
        let commit = repo
            .commit(base, &branch, &files, "feat(notes): add the notes app")
            .unwrap();
        let read = repo.read_files(commit, files.keys()).unwrap();
        assert_eq!(read, files);
        assert_eq!(repo.read_file(commit, "README.md").as_deref(), Some("hello\n"));
        assert!(
            !dir.path().join("deploy").exists(),
            "the working tree is untouched"
        );
        repo.ensure_clean().unwrap();
        assert!(matches!(
            repo.commit(base, &branch, &files, "again"),
            Err(GitError::BranchExists { .. })
        ));

        std::fs::write(dir.path().join("stray.txt"), "x").unwrap();
        let err = repo.ensure_clean().unwrap_err();
        assert!(err.to_string().contains("stray.txt"), "{err}");
    }
}

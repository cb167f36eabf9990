//! What a session observes: one process, or the processes of the host that `observer sidecar`
//! watches (all of them, or those whose name matches `--comm`, whose cgroup is under `--cgroup`
//! and/or whose container id starts with `--container`; every filter given must match).

use std::path::Path;

use regex::Regex;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ScopeError {
    #[error("--comm {pattern:?}: {source}")]
    BadRegex {
        pattern: String,
        #[source]
        source: regex::Error,
    },
    #[error(
        "--cgroup {given}: no such cgroup ({looked} does not exist); give a directory of the cgroup v2 hierarchy ({root}), e.g. system.slice/NAME.service, as listed by the 0:: line of /proc/PID/cgroup"
    )]
    NoSuchCgroup {
        given: String,
        looked: String,
        root: String,
    },
    #[error(
        "--cgroup {given}: not a directory of the cgroup v2 hierarchy ({root}; a cgroup v1 controller's directory is not one); give the cgroup v2 path, as listed by the 0:: line of /proc/PID/cgroup"
    )]
    NotCgroup2 { given: String, root: String },
    #[error("--cgroup {given}: no cgroup v2 hierarchy is mounted (looked at {looked})")]
    NoCgroup2 { given: String, looked: String },
    #[error(
        "--container {given:?}: give the container id or its first {MIN_CONTAINER_PREFIX} or more hex digits (as `docker ps` or `crictl ps` shows it; at most 64)"
    )]
    BadContainer { given: String },
}

/// The shortest `--container` prefix: fewer digits would pick containers nearly at random.
pub const MIN_CONTAINER_PREFIX: usize = 4;

/// Where the unified cgroup hierarchy is mounted (alone, or beside the v1 controllers on a
/// hybrid system); `--cgroup` accepts paths with or without it.
const CGROUP_ROOTS: [&str; 2] = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"];

/// What a session observes.
#[derive(Debug, Clone)]
pub enum Scope {
    /// One process and its threads.
    Process(u32),
    /// Every process on the host that the filter accepts, present and future.
    Host(ProcessFilter),
}

/// Which processes of the host a [`Scope::Host`] session takes on.
#[derive(Debug, Clone, Default)]
pub struct ProcessFilter {
    comm: Option<Regex>,
    /// Normalized: starts with `/`, no trailing `/` (the root is `/`).
    cgroup: Option<String>,
    /// A prefix of the container id (lower-case hex).
    container: Option<String>,
}

/// What the filter looks at of one process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Candidate<'a> {
    /// The process name (`/proc/PID/comm`).
    pub comm: &'a str,
    /// Its cgroup v2 path.
    pub cgroup: Option<&'a str>,
    /// Its container's id (`proc::container`).
    pub container_id: Option<&'a str>,
}

impl ProcessFilter {
    pub fn new(
        comm: Option<&str>,
        cgroup: Option<&str>,
        container: Option<&str>,
    ) -> Result<Self, ScopeError> {
        let comm = comm
            .map(|p| {
                Regex::new(p).map_err(|source| ScopeError::BadRegex {
                    pattern: p.to_string(),
                    source,
                })
            })
            .transpose()?;
        Ok(Self {
            comm,
            cgroup: cgroup.map(normalize_cgroup),
            container: container.map(container_prefix).transpose()?,
        })
    }

    /// No `--comm`, `--cgroup` or `--container`: every process.
    pub fn is_everything(&self) -> bool {
        self.comm.is_none() && self.cgroup.is_none() && self.container.is_none()
    }

    /// Whether the cgroup is needed to decide (saves reading it when no `--cgroup` was given).
    pub fn needs_cgroup(&self) -> bool {
        self.cgroup.is_some()
    }

    /// Whether the container id is needed to decide.
    pub fn needs_container(&self) -> bool {
        self.container.is_some()
    }

    pub fn matches(&self, c: &Candidate<'_>) -> bool {
        if let Some(re) = &self.comm {
            if !re.is_match(c.comm) {
                return false;
            }
        }
        if let Some(want) = &self.container {
            if !c
                .container_id
                .is_some_and(|id| id.starts_with(want.as_str()))
            {
                return false;
            }
        }
        if let Some(want) = &self.cgroup {
            let Some(have) = c.cgroup else { return false };
            return want == "/"
                || have == want
                || have
                    .strip_prefix(want.as_str())
                    .is_some_and(|rest| rest.starts_with('/'));
        }
        true
    }

    /// For messages: "every process", "comm ~ /nginx/", ...
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(re) = &self.comm {
            parts.push(format!("comm matching /{}/", re.as_str()));
        }
        if let Some(cg) = &self.cgroup {
            parts.push(format!("in cgroup {cg}"));
        }
        if let Some(id) = &self.container {
            parts.push(format!("in container {id}*"));
        }
        if parts.is_empty() {
            "every process".into()
        } else {
            format!("processes {}", parts.join(" and "))
        }
    }
}

/// Checks that `--cgroup PATH` names an existing cgroup v2 directory: a typo would otherwise
/// give a sidecar that watches nothing, forever, silently.
pub fn check_cgroup(path: &str) -> Result<(), ScopeError> {
    let roots: Vec<&Path> = CGROUP_ROOTS
        .iter()
        .map(Path::new)
        .filter(|r| is_cgroup2(r))
        .collect();
    check_cgroup_in(path, &roots)
}

fn check_cgroup_in(path: &str, v2_roots: &[&Path]) -> Result<(), ScopeError> {
    let Some(root) = v2_roots.first() else {
        return Err(ScopeError::NoCgroup2 {
            given: path.to_string(),
            looked: CGROUP_ROOTS.join(", "),
        });
    };
    let rel = normalize_cgroup(path);
    let rel = rel.trim_start_matches('/');
    if v2_roots.iter().any(|r| r.join(rel).is_dir()) {
        return Ok(());
    }
    let root = root.display().to_string();
    if path.starts_with('/') && Path::new(path).is_dir() {
        return Err(ScopeError::NotCgroup2 {
            given: path.to_string(),
            root,
        });
    }
    Err(ScopeError::NoSuchCgroup {
        given: path.to_string(),
        looked: Path::new(&root).join(rel).display().to_string(),
        root,
    })
}

/// `--container` as a lower-case hex prefix of a container id.
fn container_prefix(given: &str) -> Result<String, ScopeError> {
    let id = given.trim().to_ascii_lowercase();
    let hex = id.bytes().all(|b| b.is_ascii_hexdigit());
    if hex && (MIN_CONTAINER_PREFIX..=64).contains(&id.len()) {
        Ok(id)
    } else {
        Err(ScopeError::BadContainer {
            given: given.to_string(),
        })
    }
}

fn is_cgroup2(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a valid path and a zeroed out-buffer.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statfs(c.as_ptr(), &mut fs) } == 0)
        && fs.f_type == libc::CGROUP2_SUPER_MAGIC as libc::__fsword_t
}

fn normalize_cgroup(path: &str) -> String {
    let rel = CGROUP_ROOTS
        .iter()
        .find_map(|root| {
            path.strip_prefix(root)
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .unwrap_or(path);
    let trimmed = rel.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comm(comm: &str) -> Candidate<'_> {
        Candidate {
            comm,
            ..Default::default()
        }
    }

    fn cg<'a>(comm: &'a str, cgroup: Option<&'a str>) -> Candidate<'a> {
        Candidate {
            comm,
            cgroup,
            container_id: None,
        }
    }

    #[test]
    fn everything_by_default() {
        let f = ProcessFilter::new(None, None, None).unwrap();
        assert!(f.is_everything());
        assert!(f.matches(&comm("anything")));
        assert_eq!(f.describe(), "every process");
    }

    #[test]
    fn comm_regex() {
        let f = ProcessFilter::new(Some("^(nginx|envoy)$"), None, None).unwrap();
        assert!(f.matches(&cg("nginx", None)));
        assert!(!f.matches(&cg("nginx-helper", None)));
        assert!(!f.is_everything());
        assert!(ProcessFilter::new(Some("("), None, None).is_err());
    }

    #[test]
    fn cgroup_subtree_not_prefix() {
        let f = ProcessFilter::new(None, Some("/sys/fs/cgroup/system.slice/app.service/"), None)
            .unwrap();
        assert!(f.matches(&cg("x", Some("/system.slice/app.service"))));
        assert!(f.matches(&cg("x", Some("/system.slice/app.service/worker"))));
        assert!(!f.matches(&cg("x", Some("/system.slice/app.service2"))));
        assert!(!f.matches(&cg("x", None)));
        let root = ProcessFilter::new(None, Some("/sys/fs/cgroup"), None).unwrap();
        assert!(root.matches(&cg("x", Some("/anything"))));
        let hybrid = ProcessFilter::new(None, Some("/sys/fs/cgroup/unified/app"), None).unwrap();
        assert!(hybrid.matches(&cg("x", Some("/app/worker"))));
        let named = ProcessFilter::new(None, Some("/sys/fs/cgroupx"), None).unwrap();
        assert!(named.matches(&cg("x", Some("/sys/fs/cgroupx"))));
        let rel = ProcessFilter::new(None, Some("kubepods"), None).unwrap();
        assert!(rel.matches(&cg("x", Some("/kubepods/pod1"))));
    }

    #[test]
    fn a_cgroup_that_does_not_exist_is_refused() {
        let v2 = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(v2.path().join("system.slice/app.service")).unwrap();
        let roots = [v2.path()];
        check_cgroup_in("system.slice/app.service", &roots).unwrap();
        check_cgroup_in("/system.slice", &roots).unwrap();
        check_cgroup_in("/sys/fs/cgroup/unified/system.slice/", &roots).unwrap();
        let e = check_cgroup_in("/nonexistent", &roots)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--cgroup /nonexistent: no such cgroup")
                && e.contains(&v2.path().join("nonexistent").display().to_string()),
            "{e}"
        );
        // An existing directory outside the v2 hierarchy (a v1 controller's) says so.
        let v1 = tempfile::tempdir().unwrap();
        let e = check_cgroup_in(v1.path().to_str().unwrap(), &roots)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a directory of the cgroup v2 hierarchy"),
            "{e}"
        );
        assert!(check_cgroup_in("/", &[]).is_err());
    }

    #[test]
    fn container_prefix() {
        let id = "3b1f6d0c2a7e4f5b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b";
        let inside = Candidate {
            comm: "nginx",
            cgroup: Some("/system.slice/x.scope"),
            container_id: Some(id),
        };
        for given in ["3b1f", "3B1F6D0C2A7E", id] {
            let f = ProcessFilter::new(None, None, Some(given)).unwrap();
            assert!(f.needs_container() && !f.is_everything());
            assert!(f.matches(&inside), "{given}");
            assert!(!f.matches(&comm("nginx")), "outside containers: {given}");
        }
        let other = ProcessFilter::new(None, None, Some("3b1e")).unwrap();
        assert!(!other.matches(&inside));
        assert!(other.describe().contains("in container 3b1e*"));
        // Every filter given must match.
        let both = ProcessFilter::new(Some("^db$"), None, Some("3b1f")).unwrap();
        assert!(!both.matches(&inside));
        for bad in ["", "3b1", "xyz1", "3b1f-", &format!("{id}0"), "sha256:3b1f"] {
            let e = ProcessFilter::new(None, None, Some(bad))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("--container") && e.contains("4 or more hex digits"),
                "{e}"
            );
        }
    }

    #[test]
    fn both_must_match() {
        let f = ProcessFilter::new(Some("db"), Some("/db"), None).unwrap();
        assert!(f.matches(&cg("mydb", Some("/db"))));
        assert!(!f.matches(&cg("mydb", Some("/web"))));
        assert!(!f.matches(&cg("web", Some("/db"))));
        assert!(f.describe().contains("comm matching /db/"));
    }
}

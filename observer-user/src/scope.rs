//! Which processes `observer sidecar` watches: all of them, or those whose name matches
//! `--comm` and/or whose cgroup is under `--cgroup`.

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
}

/// Where the unified cgroup hierarchy is mounted (alone, or beside the v1 controllers on a
/// hybrid system); `--cgroup` accepts paths with or without it.
const CGROUP_ROOTS: [&str; 2] = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"];

#[derive(Debug, Clone, Default)]
pub struct ProcessFilter {
    comm: Option<Regex>,
    /// Normalized: starts with `/`, no trailing `/` (the root is `/`).
    cgroup: Option<String>,
}

impl ProcessFilter {
    pub fn new(comm: Option<&str>, cgroup: Option<&str>) -> Result<Self, ScopeError> {
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
        })
    }

    /// No `--comm` and no `--cgroup`: every process.
    pub fn is_everything(&self) -> bool {
        self.comm.is_none() && self.cgroup.is_none()
    }

    /// Whether `cgroup` is needed to decide (saves reading it when no `--cgroup` was given).
    pub fn needs_cgroup(&self) -> bool {
        self.cgroup.is_some()
    }

    /// `comm` is the process name (`/proc/PID/comm`), `cgroup` its cgroup v2 path.
    pub fn matches(&self, comm: &str, cgroup: Option<&str>) -> bool {
        if let Some(re) = &self.comm {
            if !re.is_match(comm) {
                return false;
            }
        }
        if let Some(want) = &self.cgroup {
            let Some(have) = cgroup else { return false };
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
        if parts.is_empty() {
            "every process".into()
        } else {
            format!("processes {}", parts.join(" and "))
        }
    }
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

    #[test]
    fn everything_by_default() {
        let f = ProcessFilter::new(None, None).unwrap();
        assert!(f.is_everything());
        assert!(f.matches("anything", None));
        assert_eq!(f.describe(), "every process");
    }

    #[test]
    fn comm_regex() {
        let f = ProcessFilter::new(Some("^(nginx|envoy)$"), None).unwrap();
        assert!(f.matches("nginx", None));
        assert!(!f.matches("nginx-helper", None));
        assert!(!f.is_everything());
        assert!(ProcessFilter::new(Some("("), None).is_err());
    }

    #[test]
    fn cgroup_subtree_not_prefix() {
        let f = ProcessFilter::new(None, Some("/sys/fs/cgroup/system.slice/app.service/")).unwrap();
        assert!(f.matches("x", Some("/system.slice/app.service")));
        assert!(f.matches("x", Some("/system.slice/app.service/worker")));
        assert!(!f.matches("x", Some("/system.slice/app.service2")));
        assert!(!f.matches("x", None));
        let root = ProcessFilter::new(None, Some("/sys/fs/cgroup")).unwrap();
        assert!(root.matches("x", Some("/anything")));
        let hybrid = ProcessFilter::new(None, Some("/sys/fs/cgroup/unified/app")).unwrap();
        assert!(hybrid.matches("x", Some("/app/worker")));
        let named = ProcessFilter::new(None, Some("/sys/fs/cgroupx")).unwrap();
        assert!(named.matches("x", Some("/sys/fs/cgroupx")));
        let rel = ProcessFilter::new(None, Some("kubepods")).unwrap();
        assert!(rel.matches("x", Some("/kubepods/pod1")));
    }

    #[test]
    fn both_must_match() {
        let f = ProcessFilter::new(Some("db"), Some("/db")).unwrap();
        assert!(f.matches("mydb", Some("/db")));
        assert!(!f.matches("mydb", Some("/web")));
        assert!(!f.matches("web", Some("/db")));
        assert!(f.describe().contains("comm matching /db/"));
    }
}

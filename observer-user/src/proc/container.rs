//! Which container and Kubernetes pod a process belongs to, read from the cgroup paths of
//! `/proc/PID/cgroup` (the runtimes name a container's cgroup after its id).
//!
//! Recognized, on cgroup v1 (`N:controllers:/path`), v2 (`0::/path`) and hybrid hierarchies
//! (v2 line first, then the v1 lines; the first line that yields an id wins):
//!
//! | runtime | systemd driver | cgroupfs driver |
//! | --- | --- | --- |
//! | Docker | `docker-<id>.scope` | `/docker/<id>` |
//! | containerd (CRI) | `cri-containerd-<id>.scope` | `.../pod<uid>/<id>` |
//! | CRI-O | `crio-<id>.scope` | `.../pod<uid>/crio-<id>` |
//! | Podman | `libpod-<id>.scope` | `/libpod_parent/libpod-<id>` |
//! | Kubernetes pod | `kubepods[-<qos>]-pod<uid with _>.slice` | `/kubepods[/<qos>]/pod<uid>` |
//!
//! `<id>` is exactly 64 lower-case hex digits; `<uid>` a 36-character UUID (or the 32 hex digits
//! kubelet gives static pods). Anything else gives no id: a wrong id is worse than none (an
//! operator would look for the wrong container). Conmon's `libpod-conmon-<id>.scope` and
//! `crio-conmon-<id>.scope` are not containers and give none. A process in a cgroup below
//! the container's (`docker-<id>.scope/init.scope` of a container running systemd) belongs to
//! that container; with nested containers (Docker in Docker, kind) the innermost one counts.
//! Read from a private cgroup namespace, paths are relative to the reader's cgroup
//! (`/../../kubepods-besteffort-pod<uid>.slice/...`): the systemd driver's names still give the
//! ids; the cgroupfs driver's bare `<id>` under a `pod<uid>` whose `kubepods` parent is cut off
//! is not trusted and gives none.

/// The container and pod of a process; both `None` outside containers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerIdentity {
    /// The full container id as the runtime names it (64 lower-case hex digits).
    pub container_id: Option<String>,
    /// The Kubernetes pod UID in its dashed form.
    pub pod_uid: Option<String>,
}

impl ContainerIdentity {
    pub fn is_none(&self) -> bool {
        self.container_id.is_none() && self.pod_uid.is_none()
    }
}

/// At most this much of `/proc/PID/cgroup` is read: a dozen v1 controllers with long paths
/// fit well below it; a longer file is cut at its last whole line.
pub const MAX_CGROUP_FILE: usize = 64 * 1024;

const CONTAINER_ID_LEN: usize = 64;

/// The container and pod of process `pid` (none if it is gone or the file is unreadable).
pub fn identity_of(pid: u32) -> ContainerIdentity {
    read_bounded(&format!("/proc/{pid}/cgroup"))
        .map(|t| parse_cgroup_file(&t))
        .unwrap_or_default()
}

/// A file's first [`MAX_CGROUP_FILE`] bytes, cut after the last newline when it is longer (a cut
/// path could name an outer container instead of the inner one).
fn read_bounded(path: &str) -> Option<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut buf = Vec::with_capacity(4096);
    file.take(MAX_CGROUP_FILE as u64 + 1)
        .read_to_end(&mut buf)
        .ok()?;
    if buf.len() > MAX_CGROUP_FILE {
        let end = buf[..MAX_CGROUP_FILE]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        buf.truncate(end);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// The identity a `/proc/PID/cgroup` text gives: the v2 line (`0::`) first, then the v1 lines in
/// order; the first with a container id wins, else the first with a pod UID.
pub fn parse_cgroup_file(text: &str) -> ContainerIdentity {
    let mut v2 = Vec::new();
    let mut v1 = Vec::new();
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(hier), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if hier == "0" && controllers.is_empty() {
            v2.push(path);
        } else if !hier.is_empty() && hier.bytes().all(|b| b.is_ascii_digit()) {
            v1.push(path);
        }
    }
    let mut pod_only = None;
    for path in v2.into_iter().chain(v1) {
        let id = parse_cgroup_path(path);
        if id.container_id.is_some() {
            return id;
        }
        if pod_only.is_none() && id.pod_uid.is_some() {
            pod_only = Some(id);
        }
    }
    pod_only.unwrap_or_default()
}

/// The identity one cgroup path gives (`/system.slice/docker-<id>.scope`).
pub fn parse_cgroup_path(path: &str) -> ContainerIdentity {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    // (index, id) of the innermost container and pod components.
    let mut container: Option<(usize, String)> = None;
    let mut pod: Option<(usize, String)> = None;
    for (i, part) in parts.iter().enumerate() {
        let parent = i.checked_sub(1).map(|j| parts[j]);
        if let Some(uid) = pod_slice_uid(part).or_else(|| pod_dir_uid(part, &parts[..i])) {
            pod = Some((i, uid));
        } else if let Some(id) =
            container_id_of(part, parent, pod.as_ref().is_some_and(|p| p.0 + 1 == i))
        {
            container = Some((i, id));
        }
    }
    match (container, pod) {
        // The process sits in a pod's cgroup below an outer container (a kind node), not in
        // one of the pod's containers: the outer id would be misread as the pod's.
        (Some((ci, _)), Some((pi, uid))) if pi > ci => ContainerIdentity {
            container_id: None,
            pod_uid: Some(uid),
        },
        (c, p) => ContainerIdentity {
            container_id: c.map(|c| c.1),
            pod_uid: p.map(|p| p.1),
        },
    }
}

/// A container's id from one path component, given its parent component and whether that
/// parent is a pod's.
fn container_id_of(part: &str, parent: Option<&str>, under_pod: bool) -> Option<String> {
    for (prefix, suffix) in [
        ("docker-", ".scope"),
        ("cri-containerd-", ".scope"),
        ("crio-", ".scope"),
        ("libpod-", ".scope"),
    ] {
        if let Some(id) = part
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(suffix))
        {
            return container_hex(id);
        }
    }
    if parent == Some("docker") || under_pod {
        if let Some(id) = container_hex(part) {
            return Some(id);
        }
    }
    if under_pod {
        if let Some(id) = part.strip_prefix("crio-").and_then(container_hex) {
            return Some(id);
        }
    }
    if parent == Some("libpod_parent") {
        return part.strip_prefix("libpod-").and_then(container_hex);
    }
    None
}

/// Whether `id` has the shape of a container id this module gives (recordings are checked).
pub fn is_container_id(id: &str) -> bool {
    container_hex(id).is_some()
}

/// Whether `uid` has the shape of a pod UID this module gives.
pub fn is_pod_uid(uid: &str) -> bool {
    pod_uid(uid).is_some()
}

fn container_hex(id: &str) -> Option<String> {
    (id.len() == CONTAINER_ID_LEN && is_lower_hex(id)).then(|| id.to_string())
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `kubepods-pod<uid>.slice`, `kubepods-burstable-pod<uid>.slice`,
/// `kubepods-besteffort-pod<uid>.slice` (systemd driver; `-` of the UID written `_`).
fn pod_slice_uid(part: &str) -> Option<String> {
    let rest = part.strip_prefix("kubepods-")?.strip_suffix(".slice")?;
    let rest = rest
        .strip_prefix("burstable-")
        .or_else(|| rest.strip_prefix("besteffort-"))
        .unwrap_or(rest);
    let raw = rest.strip_prefix("pod")?;
    if raw.contains('-') {
        return None;
    }
    pod_uid(&raw.replace('_', "-"))
}

/// `pod<uid>` right under `kubepods` or `kubepods/<qos>` (cgroupfs driver).
fn pod_dir_uid(part: &str, ancestors: &[&str]) -> Option<String> {
    let raw = part.strip_prefix("pod")?;
    let under_kubepods = matches!(
        ancestors,
        [.., "kubepods"] | [.., "kubepods", "burstable" | "besteffort"]
    );
    under_kubepods.then(|| pod_uid(raw)).flatten()
}

/// A Kubernetes pod UID: a UUID (8-4-4-4-12 lower-case hex) or, for static pods, 32 hex digits.
fn pod_uid(s: &str) -> Option<String> {
    let ok = match s.len() {
        36 => s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
        }),
        32 => is_lower_hex(s),
        _ => false,
    };
    ok.then(|| s.to_string())
}

#[cfg(test)]
mod tests;

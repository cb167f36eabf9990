use super::*;

const ID: &str = "3b1f6d0c2a7e4f5b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b";
const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const UID: &str = "8f9b2c4e-1d3a-4b5c-9e7f-0a1b2c3d4e5f";

fn id(container: Option<&str>, pod: Option<&str>) -> ContainerIdentity {
    ContainerIdentity {
        container_id: container.map(str::to_string),
        pod_uid: pod.map(str::to_string),
    }
}

fn slice_uid() -> String {
    UID.replace('-', "_")
}

#[test]
fn docker_systemd_driver_v2() {
    let text = format!("0::/system.slice/docker-{ID}.scope\n");
    assert_eq!(parse_cgroup_file(&text), id(Some(ID), None));
}

#[test]
fn docker_cgroupfs_driver_v1() {
    let text = format!(
        "12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/\n"
    );
    assert_eq!(parse_cgroup_file(&text), id(Some(ID), None));
}

#[test]
fn hybrid_prefers_the_line_with_an_id_v2_first() {
    // systemd's own v1 hierarchy and the unified one both name the scope; the controllers'
    // v1 lines may lag behind (the process was moved in the unified hierarchy only).
    let text = format!(
        "12:cpu,cpuacct:/\n1:name=systemd:/system.slice/docker-{ID2}.scope\n0::/system.slice/docker-{ID}.scope\n"
    );
    assert_eq!(parse_cgroup_file(&text), id(Some(ID), None));
    // v2 line without an id: a v1 line that has one is taken.
    let text = format!("4:memory:/docker/{ID2}\n0::/user.slice\n");
    assert_eq!(parse_cgroup_file(&text), id(Some(ID2), None));
}

#[test]
fn docker_container_running_systemd() {
    let text = format!("0::/system.slice/docker-{ID}.scope/init.scope\n");
    assert_eq!(parse_cgroup_file(&text), id(Some(ID), None));
    let text = format!("0::/system.slice/docker-{ID}.scope/system.slice/nginx.service\n");
    assert_eq!(parse_cgroup_file(&text), id(Some(ID), None));
}

#[test]
fn mount_units_and_lookalikes_are_not_containers() {
    for path in [
        format!("/system.slice/run-docker-runtime\\x2drunc-moby-{ID}-runtime.mount"),
        format!("/system.slice/var-lib-docker-overlay2-{ID}-merged.mount"),
        format!("/system.slice/docker-{ID}.mount"),
        "/system.slice/docker.service".to_string(),
        "/system.slice/containerd.service".to_string(),
        format!("/system.slice/docker-{}.scope", &ID[..63]),
        format!("/system.slice/docker-{ID}0.scope"),
        format!("/system.slice/docker-{}.scope", ID.to_uppercase()),
        format!("/system.slice/docker-{}g.scope", &ID[..63]),
        format!("/system.slice/xdocker-{ID}.scope"),
        format!("/system.slice/docker-{ID}.scope.d"),
        format!("/{ID}"),
        format!("/other/{ID}"),
        format!("/libpod_parent/conmon-{ID}"),
        "/".to_string(),
        String::new(),
    ] {
        assert_eq!(parse_cgroup_path(&path), id(None, None), "{path}");
    }
}

#[test]
fn podman() {
    let rootless = format!(
        "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container\n"
    );
    assert_eq!(parse_cgroup_file(&rootless), id(Some(ID), None));
    let rootful = format!("0::/machine.slice/libpod-{ID}.scope\n");
    assert_eq!(parse_cgroup_file(&rootful), id(Some(ID), None));
    let cgroupfs = format!("0::/libpod_parent/libpod-{ID}\n");
    assert_eq!(parse_cgroup_file(&cgroupfs), id(Some(ID), None));
    // conmon, the container's monitor, is not in the container.
    let conmon = format!("0::/machine.slice/libpod-conmon-{ID}.scope\n");
    assert_eq!(parse_cgroup_file(&conmon), id(None, None));
}

#[test]
fn kubernetes_systemd_driver() {
    let u = slice_uid();
    let containerd = format!(
        "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/cri-containerd-{ID}.scope\n"
    );
    assert_eq!(parse_cgroup_file(&containerd), id(Some(ID), Some(UID)));
    let crio = format!(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/crio-{ID}.scope\n"
    );
    assert_eq!(parse_cgroup_file(&crio), id(Some(ID), Some(UID)));
    // Guaranteed pods sit right under kubepods.slice.
    let guaranteed =
        format!("0::/kubepods.slice/kubepods-pod{u}.slice/cri-containerd-{ID}.scope\n");
    assert_eq!(parse_cgroup_file(&guaranteed), id(Some(ID), Some(UID)));
    let cri_dockerd = format!(
        "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/docker-{ID}.scope\n"
    );
    assert_eq!(parse_cgroup_file(&cri_dockerd), id(Some(ID), Some(UID)));
    let conmon = format!(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/crio-conmon-{ID}.scope\n"
    );
    assert_eq!(parse_cgroup_file(&conmon), id(None, Some(UID)));
    // A static pod's UID is a hash: 32 hex digits.
    let static_pod = format!(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope\n",
        &ID[..32]
    );
    assert_eq!(
        parse_cgroup_file(&static_pod),
        id(Some(ID), Some(&ID[..32]))
    );
}

#[test]
fn kubernetes_cgroupfs_driver() {
    let v1 = format!(
        "11:cpu,cpuacct:/kubepods/besteffort/pod{UID}/{ID}\n10:memory:/kubepods/besteffort/pod{UID}/{ID}\n0::/\n"
    );
    assert_eq!(parse_cgroup_file(&v1), id(Some(ID), Some(UID)));
    let guaranteed = format!("0::/kubepods/pod{UID}/{ID}\n");
    assert_eq!(parse_cgroup_file(&guaranteed), id(Some(ID), Some(UID)));
    let crio = format!("0::/kubepods/burstable/pod{UID}/crio-{ID}\n");
    assert_eq!(parse_cgroup_file(&crio), id(Some(ID), Some(UID)));
    // The pod's own cgroup: a pod, no container.
    let pod = format!("0::/kubepods/burstable/pod{UID}\n");
    assert_eq!(parse_cgroup_file(&pod), id(None, Some(UID)));
    // `pod<uid>` elsewhere is not a pod; a bare id elsewhere not a container.
    let elsewhere = format!("0::/custom/pod{UID}/{ID}\n");
    assert_eq!(parse_cgroup_file(&elsewhere), id(None, None));
}

#[test]
fn pod_uids_are_validated() {
    for bad in [
        "8f9b2c4e_1d3a_4b5c_9e7f_0a1b2c3d4e5",  // short
        "8f9b2c4e-1d3a_4b5c_9e7f_0a1b2c3d4e5f", // a dash: a slice nesting, not a uid
        "8F9B2C4E_1D3A_4B5C_9E7F_0A1B2C3D4E5F", // upper case
        "8f9b2c4e1d3a_4b5c_9e7f_0a1b2c3d4e5f0", // dashes misplaced
        "",
    ] {
        let path = format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{bad}.slice/cri-containerd-{ID}.scope");
        assert_eq!(parse_cgroup_path(&path), id(Some(ID), None), "{bad}");
    }
    let wrong_qos = format!("/kubepods.slice/kubepods-gold-pod{}.slice", slice_uid());
    assert_eq!(parse_cgroup_path(&wrong_qos), id(None, None));
}

#[test]
fn nested_containers_the_innermost_counts() {
    let u = slice_uid();
    // kind: a Kubernetes node in a Docker container.
    let kind = format!(
        "0::/system.slice/docker-{ID2}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{u}.slice/cri-containerd-{ID}.scope\n"
    );
    // kubelet's `kubelet-` prefix (kind) is not recognized as a pod slice: the container is.
    assert_eq!(parse_cgroup_file(&kind).container_id.as_deref(), Some(ID));
    let dind = format!("0::/docker/{ID2}/docker/{ID}\n");
    assert_eq!(parse_cgroup_file(&dind), id(Some(ID), None));
    // In a pod's cgroup below an outer container: the pod, not the outer container.
    let pod_in_container =
        format!("0::/system.slice/docker-{ID2}.scope/kubepods.slice/kubepods-pod{u}.slice\n");
    assert_eq!(parse_cgroup_file(&pod_in_container), id(None, Some(UID)));
}

#[test]
fn not_in_a_container() {
    for text in [
        "0::/user.slice/user-1000.slice/session-3.scope\n",
        "0::/system.slice/sshd.service\n",
        "0::/init.scope\n",
        "12:pids:/user.slice\n1:name=systemd:/user.slice/user-0.slice/session-c1.scope\n0::/user.slice/user-0.slice/session-c1.scope\n",
        // Outside the reader's cgroup namespace.
        "0::/../../..\n",
    ] {
        assert_eq!(parse_cgroup_file(text), id(None, None), "{text}");
    }
}

#[test]
fn garbage_gives_nothing() {
    for text in [
        "",
        "\n\n",
        "garbage",
        "::::",
        "0:",
        "x::/docker/a",
        "\u{0}\u{1}\u{ff}",
        &format!("0:cpu/system.slice/docker-{ID}.scope"),
        &format!("a:cpu:/docker/{ID}"),
    ] {
        assert_eq!(parse_cgroup_file(text), id(None, None), "{text:?}");
    }
    // A path may hold colons: everything after the second is the path.
    let colon = format!("0::/weird:name/docker-{ID}.scope\n");
    assert_eq!(parse_cgroup_file(&colon), id(Some(ID), None));
    // Huge input: parsed in linear time, nothing made up.
    let huge = "0::/".to_string() + &"a/".repeat(200_000) + "\n";
    assert_eq!(parse_cgroup_file(&huge), id(None, None));
    let many = format!("0::/docker-{ID}.scope/\n").repeat(10_000);
    assert_eq!(parse_cgroup_file(&many), id(Some(ID), None));
}

#[test]
fn reads_are_bounded_and_cut_at_a_whole_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cgroup");
    // The first whole lines fit; the tail (cut mid-path) must not count.
    let filler = "1:name=x:/".to_string() + &"a".repeat(100) + "\n";
    let mut text = filler.repeat(MAX_CGROUP_FILE / filler.len());
    text.push_str(&format!("0::/docker/{ID}/docker/{ID2}\n"));
    std::fs::write(&path, &text).unwrap();
    let read = read_bounded(path.to_str().unwrap()).unwrap();
    assert!(read.len() <= MAX_CGROUP_FILE && read.ends_with('\n'));
    assert_eq!(parse_cgroup_file(&read), id(None, None));
    // This process: no container id made up (the test may run in a container; then it has one
    // that is well-formed).
    let me = identity_of(std::process::id());
    if let Some(c) = me.container_id {
        assert_eq!(c.len(), 64);
    }
    assert_eq!(identity_of(u32::MAX), id(None, None));
}

/// Read from a private cgroup namespace (the sidecar in a pod), paths are relative to the
/// reader's cgroup: the systemd driver's names still say it all, the cgroupfs driver's do not.
#[test]
fn seen_from_a_private_cgroup_namespace() {
    let u = slice_uid();
    let systemd = format!("0::/../../kubepods-besteffort-pod{u}.slice/cri-containerd-{ID}.scope\n");
    assert_eq!(parse_cgroup_file(&systemd), id(Some(ID), Some(UID)));
    let docker = format!("0::/../docker-{ID}.scope\n");
    assert_eq!(parse_cgroup_file(&docker), id(Some(ID), None));
    // `kubepods` is cut off: a bare id under an unknown parent is not trusted.
    let cgroupfs = format!("0::/../../pod{UID}/{ID}\n");
    assert_eq!(parse_cgroup_file(&cgroupfs), id(None, None));
}

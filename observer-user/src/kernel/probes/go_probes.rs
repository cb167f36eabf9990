//! The Go uprobes of one process: attached at adoption, the per-park pair taken off and put
//! back by the probe budget, the parked-goroutine table they keep.

use std::path::Path;

use aya::{
    maps::{HashMap, MapData},
    programs::{
        uprobe::{UProbeAttachLocation, UProbeScope},
        UProbe,
    },
};
use observer_common::{GoKey, GoParked, GoProcess};

use super::{
    permission_denied, GoAttachPoint, ProbeError, Probes, BPF_NOEXIST, GO_PER_PARK_PROBES,
};

impl Probes {
    /// Starts the goroutine probes on Go process `pid` (whose executable is `exe`): all of
    /// them or none, since a partial set would report goroutine waits without their wakers
    /// or panics without their recoveries.
    pub fn watch_go(
        &mut self,
        pid: u32,
        exe: &Path,
        layout: GoProcess,
        points: &[GoAttachPoint],
    ) -> Result<(), ProbeError> {
        let Some(scoped) = std::num::NonZeroU32::new(pid) else {
            return Err(ProbeError::GoProbes("pid 0".into()));
        };
        let mut procs: HashMap<&mut MapData, u32, GoProcess> = self.map_mut("GO_PROCS")?;
        procs
            .insert(pid, layout, 0)
            .map_err(|source| ProbeError::Map {
                name: "GO_PROCS",
                source,
            })?;
        let mut failed = Vec::new();
        let mut denied = Vec::new();
        for point in points {
            let attached = self
                .ebpf
                .program_mut(point.program)
                .and_then(|p| <&mut UProbe>::try_from(p).ok())
                .map(|p| {
                    p.attach(
                        UProbeAttachLocation::AbsoluteOffset(point.file_offset),
                        exe,
                        UProbeScope::OneProcess(scoped),
                    )
                });
            match attached {
                Some(Ok(link)) => self.go_links.push((pid, point.program, link)),
                Some(Err(e)) if permission_denied(&e) => denied.push(point.function.clone()),
                Some(Err(e)) => failed.push(format!("{}: {e}", point.function)),
                None => failed.push(format!("{}: program missing", point.program)),
            }
        }
        if denied.is_empty() && failed.is_empty() {
            let per_park = points
                .iter()
                .filter(|p| GO_PER_PARK_PROBES.contains(&p.program))
                .cloned()
                .collect();
            self.go_park_points
                .insert(pid, (exe.to_path_buf(), per_park));
            return Ok(());
        }
        self.unwatch_go(pid);
        if !denied.is_empty() {
            return Err(ProbeError::UprobesDenied {
                functions: denied.join(", "),
            });
        }
        Err(ProbeError::GoProbes(failed.join("; ")))
    }

    /// Takes the goroutine probes off process `pid` and forgets its parked goroutines (which
    /// would otherwise look parked forever).
    pub fn unwatch_go(&mut self, pid: u32) {
        self.detach_go(pid, |_| true);
        self.go_park_points.remove(&pid);
        if let Ok(mut procs) = self.map_mut::<HashMap<&mut MapData, u32, GoProcess>>("GO_PROCS") {
            let _ = procs.remove(&pid);
        }
        self.forget_go_parked(pid);
        // Its short waits still in the aggregate maps go with the next drain, which empties
        // the maps whoever the entries belong to.
    }

    /// Takes only the per-park probes (`gopark`, `ready`) off process `pid`: they trap on
    /// every goroutine switch. Panics, fatal errors and recoveries fire per rare event and
    /// cost nothing at any park rate, so their probes stay. Its parked goroutines are
    /// forgotten: nothing would end their waits any more.
    pub fn stop_go_parks(&mut self, pid: u32) {
        self.detach_go(pid, |program| GO_PER_PARK_PROBES.contains(&program));
        self.forget_go_parked(pid);
    }

    /// Puts the per-park probes of process `pid` back (after `stop_go_parks`). Its park
    /// table starts empty: goroutines parked meanwhile are not in it.
    pub fn resume_go_parks(&mut self, pid: u32) -> Result<(), ProbeError> {
        let Some(scoped) = std::num::NonZeroU32::new(pid) else {
            return Err(ProbeError::GoProbes("pid 0".into()));
        };
        let Some((exe, points)) = self.go_park_points.get(&pid).cloned() else {
            return Err(ProbeError::GoProbes(format!(
                "pid {pid}: no park probes to resume"
            )));
        };
        if self
            .go_links
            .iter()
            .any(|(p, program, _)| *p == pid && GO_PER_PARK_PROBES.contains(program))
        {
            return Ok(());
        }
        for point in &points {
            let attached = self
                .ebpf
                .program_mut(point.program)
                .and_then(|p| <&mut UProbe>::try_from(p).ok())
                .map(|p| {
                    p.attach(
                        UProbeAttachLocation::AbsoluteOffset(point.file_offset),
                        &exe,
                        UProbeScope::OneProcess(scoped),
                    )
                });
            match attached {
                Some(Ok(link)) => self.go_links.push((pid, point.program, link)),
                Some(Err(e)) => {
                    // Half a pair would see parks without wake-ups: none rather than that.
                    self.stop_go_parks(pid);
                    return Err(ProbeError::GoProbes(format!("{}: {e}", point.function)));
                }
                None => {
                    self.stop_go_parks(pid);
                    return Err(ProbeError::GoProbes(format!(
                        "{}: program missing",
                        point.program
                    )));
                }
            }
        }
        Ok(())
    }

    fn detach_go(&mut self, pid: u32, which: impl Fn(&str) -> bool) {
        let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.go_links)
            .into_iter()
            .partition(|(p, program, _)| *p == pid && which(program));
        self.go_links = others;
        for (_, program, link) in mine {
            if let Some(p) = self
                .ebpf
                .program_mut(program)
                .and_then(|p| <&mut UProbe>::try_from(p).ok())
            {
                let _ = p.detach(link);
            }
        }
    }

    fn forget_go_parked(&mut self, pid: u32) {
        if let Ok(mut parked) = self.map_mut::<HashMap<&mut MapData, GoKey, GoParked>>("GO_PARKED")
        {
            let keys: Vec<GoKey> = parked
                .keys()
                .filter_map(Result::ok)
                .filter(|k| k.tgid == pid)
                .collect();
            for k in keys {
                let _ = parked.remove(&k);
            }
        }
    }

    /// Goroutines parked right now in `tgid`.
    pub fn go_parked(&self, tgid: u32) -> Result<Vec<(u64, GoParked)>, ProbeError> {
        let map: HashMap<&MapData, GoKey, GoParked> = self.map("GO_PARKED")?;
        Ok(map
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, _)| k.tgid == tgid)
            .map(|(k, v)| (k.goid, v))
            .collect())
    }

    /// Enters a goroutine that was parked before the probes attached, unless the kernel saw it
    /// park since.
    pub fn seed_go_parked(&mut self, key: GoKey, parked: GoParked) -> Result<(), ProbeError> {
        let mut map: HashMap<&mut MapData, GoKey, GoParked> = self.map_mut("GO_PARKED")?;
        map.insert(key, parked, BPF_NOEXIST)
            .map_err(|source| ProbeError::Map {
                name: "GO_PARKED",
                source,
            })
    }

    /// Walk the stack of one short wait in `period` of Go process `pid` (0: none). No effect
    /// on a process whose goroutine probes are off.
    pub fn set_go_sample_period(&mut self, pid: u32, period: u32) -> Result<(), ProbeError> {
        /// Map-update flag: update only if present (a process just unwatched stays out).
        const BPF_EXIST: u64 = 2;
        let map_err = |source| ProbeError::Map {
            name: "GO_PROCS",
            source,
        };
        let mut procs: HashMap<&mut MapData, u32, GoProcess> = self.map_mut("GO_PROCS")?;
        let mut layout = procs.get(&pid, 0).map_err(map_err)?;
        layout.sample_period = period;
        procs.insert(pid, layout, BPF_EXIST).map_err(map_err)
    }

    /// Goroutine parks of Go process `pid` so far (None when its probes are off).
    pub fn go_parks(&self, pid: u32) -> Option<u64> {
        let procs: HashMap<&MapData, u32, GoProcess> = self.map("GO_PROCS").ok()?;
        procs.get(&pid, 0).ok().map(|p| p.parks)
    }
}

//! The OTLP export's hooks: blocked time goes to the whole-run profile and, when
//! `--otlp-endpoint` is on, to the export's current interval as well.

use super::Session;

impl Session {
    /// Adds blocked time to the profile, and to the OTLP export's interval when on.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn profile_add(
        &mut self,
        pid: u32,
        category: crate::output::profile::Category,
        process: &str,
        thread: &str,
        frames: &[crate::stacks::frame::Frame],
        ns: u64,
        count: u64,
    ) {
        let container = self.container_of(pid);
        self.folded
            .add_many_frames(category, (process, &container), thread, frames, ns, count);
        if let Some(o) = self.otlp.as_mut() {
            o.profile_sample(
                pid, &container, category, process, thread, frames, ns, count,
            );
        }
    }

    /// Queues `alert` for the collector.
    pub(super) fn otlp_alert(&mut self, alert: &crate::output::alert::Alert) {
        if self.otlp.is_some() {
            let process = self.process_name(alert.pid);
            if let Some(o) = self.otlp.as_mut() {
                o.alert(alert, &process);
            }
        }
    }

    /// Ends the export's interval: the kernel's short-wait sums first, so that they count in it.
    pub(super) fn otlp_export_profiles(&mut self) {
        self.drain_aggregates();
        if let Some(o) = self.otlp.as_mut() {
            o.export_profiles();
        }
    }
}

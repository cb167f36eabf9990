//! The pprof labels of the goroutines an alert is about, read from the process on demand
//! (never for every goroutine of a snapshot).

use super::GoWatch;
use crate::golang::{goroutine_labels, GoLabels};

impl GoWatch {
    /// The labels of goroutine `goid` whose `g` is at `g_addr`: those it holds now, or with
    /// `held`, those a probe saw it hold if it still does; empty when it has none or they
    /// cannot be read with certainty (see `golang::labels`).
    pub(super) fn labels_of(&mut self, g_addr: u64, goid: u64, held: Option<u64>) -> GoLabels {
        if g_addr == 0 {
            return GoLabels::new();
        }
        let Some(layout) = self
            .binary
            .as_ref()
            .and_then(|b| b.labels_layout().copied())
        else {
            return GoLabels::new();
        };
        goroutine_labels(self.pid, &layout, g_addr, goid, held).unwrap_or_default()
    }
}

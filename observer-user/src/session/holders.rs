//! What the holder of a contended lock did while others waited (stub: nothing observed yet).

use super::Session;
use crate::detect::holder::HolderActivity;

impl Session {
    /// The holder's side of a hold of thread `holder_tid` of process `tgid` since `since_ns`.
    pub(super) fn holder_activity(
        &mut self,
        _tgid: u32,
        _holder_tid: u32,
        _since_ns: u64,
    ) -> HolderActivity {
        HolderActivity::unknown()
    }
}

//! The kernel handle seen through the small interfaces its consumers define, so that stack
//! resolution and goroutine detection know nothing of the kernel and run on fakes in tests.

use observer_common::GoParked;

use crate::{
    detect::gowatch::GoroutineProbes, kernel::probes::Probes, stacks::resolver::KernelStacks,
};

impl KernelStacks for Probes {
    fn stack(&self, stack_id: i32) -> Option<Vec<u64>> {
        Probes::stack(self, stack_id)
    }

    fn kernel_stack(&self, stack_id: i32) -> Option<Vec<u64>> {
        Probes::kernel_stack(self, stack_id)
    }
}

impl GoroutineProbes for Probes {
    fn go_parked(&self, pid: u32) -> Option<Vec<(u64, GoParked)>> {
        Probes::go_parked(self, pid).ok()
    }

    fn set_go_sample_period(&mut self, pid: u32, period: u32) -> bool {
        Probes::set_go_sample_period(self, pid, period).is_ok()
    }
}

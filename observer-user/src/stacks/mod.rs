//! Turning raw stacks into frames: unwinding, symbolization, stack resolution, frame
//! rendering and inflation.
pub mod frames;
pub mod stackframe;
pub mod stackres;
pub mod symbolize;
pub mod unwind;

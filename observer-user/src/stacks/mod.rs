//! Raw stacks -> named frames: unwinding a copied stack (`unwind`), naming addresses
//! (`symbolize`, with `symbol_notes` for binaries without symbols), turning what a probe captured into frames (`resolver`), the frame type kept
//! by every output (`frame`), and which frames are the program's own code (`own_code`).
pub mod frame;
pub mod kernel_symbols;
pub mod lock_sites;
pub mod own_code;
pub mod resolver;
pub mod symbol_notes;
pub mod symbolize;
pub mod unwind;

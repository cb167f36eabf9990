//! rust_mutex_contend: N threads increment one counter under one std::sync::Mutex for T seconds.
//!
//! Usage: rust_mutex_contend [THREADS=4] [SECONDS=2] [INSIDE=1024] [OUTSIDE=32]
//! The Rust twin of mutex_contend.c (same xorshift work inside and outside the lock), built with
//! `rustc -O` and no dependencies. Prints one line:
//! "rust_mutex_contend: threads=N secs=T ops=X ops_per_sec=Y blocks_per_sec=Z", where blocks are
//! the process's voluntary context switches.
//!
//! std's futex mutex spins a little, then parks in FUTEX_WAIT on the lock word (through glibc's
//! syscall()), and the unlocker wakes one waiter: with a ~1 us critical section on 2 cores with 4
//! threads, tens of thousands of real sleeps a second go through observer's programs.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

fn work(mut x: u64, rounds: u32) -> u64 {
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

extern "C" {
    fn getrusage(who: i32, usage: *mut [i64; 18]) -> i32;
}

/// Voluntary context switches of the whole process (`ru_nvcsw` of getrusage(RUSAGE_SELF)).
fn voluntary_switches() -> i64 {
    let mut usage = [0i64; 18];
    // SAFETY: struct rusage on x86_64 Linux is two timevals (4 longs) and 14 longs: 18 i64s.
    let ok = unsafe { getrusage(0, &mut usage) } == 0;
    // ru_utime, ru_stime (2 longs each), then ru_maxrss .. ru_nsignals (12 fields), ru_nvcsw.
    if ok {
        usage[16]
    } else {
        0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: f64| -> f64 {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
    };
    let threads = arg(1, 4.0) as usize;
    let secs = arg(2, 2.0);
    let inside = arg(3, 1024.0) as u32;
    let outside = arg(4, 32.0) as u32;
    if !(1..=1024).contains(&threads) || secs.is_nan() || secs <= 0.0 {
        eprintln!("usage: rust_mutex_contend [THREADS 1..1024] [SECONDS > 0] [INSIDE] [OUTSIDE]");
        std::process::exit(2);
    }
    let counter = Arc::new(Mutex::new(0u64));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let counter = Arc::clone(&counter);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut x = (i as u64).wrapping_mul(2654435761) + 1;
                let mut ops = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    {
                        let mut c = counter.lock().unwrap();
                        *c += 1;
                        x = work(x, inside);
                    }
                    x = work(x, outside);
                    ops += 1;
                }
                black_box(x);
                ops
            })
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "rust_mutex_contend: threads={threads} secs={elapsed:.3} ops={total} ops_per_sec={:.0} blocks_per_sec={:.0}",
        total as f64 / elapsed,
        voluntary_switches() as f64 / elapsed
    );
    let counted = *counter.lock().unwrap();
    std::process::exit(if counted == total { 0 } else { 1 });
}

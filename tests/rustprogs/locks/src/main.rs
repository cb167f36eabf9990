//! Rust lock targets: one contended or idle lock shape per mode, run for a fixed time.
//!
//! usage: locks MODE [SECONDS]   (default 5; prints "ROLE tid=N" per thread on stderr, exits 0)
//! - `std-mutex`: "maintainer" holds a std::sync::Mutex ~300 ms every ~700 ms in
//!   `rebuild_index`; "worker-1".."worker-3" wait for it in `worker_update`.
//! - `std-rwlock`: "writer" holds a std::sync::RwLock for writing ~300 ms in `rebuild_index`;
//!   "reader-1".."reader-3" wait for read access in `reader_lookup`.
//! - `parking-lot`: the `std-mutex` shape with a parking_lot::Mutex.
//! - `condvar-pool`: 8 threads idle on a std Condvar in `wait_for_job`, 4 on an mpsc channel in
//!   `wait_for_message`; a producer wakes one of each every ~1.5 s. Nothing is a lock hold.
//! - `oncelock`: "initializer" fills a OnceLock for ~1 s in `load_config`; "waiter-1".."3"
//!   wait for it in `read_config`, once.
//!
//! The functions the tests look for are `#[inline(never)]` so that their names survive
//! optimization.

use std::hint::black_box;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::thread;
use std::time::Duration;

const HOLD: Duration = Duration::from_millis(300);
const PAUSE: Duration = Duration::from_millis(700);
const WAITER_PAUSE: Duration = Duration::from_millis(5);

fn gettid() -> i64 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc_gettid() }
}

extern "C" {
    #[link_name = "gettid"]
    fn libc_gettid() -> i64;
}

/// Starts a named thread and prints "ROLE TID" from it (the tests match tids by name).
fn spawn_named<F: FnOnce() + Send + 'static>(name: &str, f: F) {
    let role = name.to_string();
    thread::Builder::new()
        .name(role.clone())
        .spawn(move || {
            eprintln!("{role} tid={}", gettid());
            f();
        })
        .expect("thread spawn failed");
}

#[inline(never)]
fn rebuild_index(index: &Mutex<Vec<u64>>) {
    let mut guard = index.lock().unwrap();
    thread::sleep(HOLD); // stands for rebuilding the index
    for v in guard.iter_mut() {
        *v = 0;
    }
}

#[inline(never)]
fn worker_update(index: &Mutex<Vec<u64>>, key: usize) {
    let mut guard = index.lock().unwrap();
    let len = guard.len();
    guard[key % len] += 1;
}

fn std_mutex() {
    let index = Arc::new(Mutex::new(vec![0u64; 64]));
    for i in 1..=3 {
        let index = Arc::clone(&index);
        spawn_named(&format!("worker-{i}"), move || {
            for key in 0.. {
                worker_update(&index, key);
                thread::sleep(WAITER_PAUSE);
            }
        });
    }
    spawn_named("maintainer", move || loop {
        thread::sleep(PAUSE);
        rebuild_index(&index);
    });
}

#[inline(never)]
fn rebuild_table(table: &RwLock<Vec<u64>>) {
    let mut guard = table.write().unwrap();
    thread::sleep(HOLD);
    for v in guard.iter_mut() {
        *v += 1;
    }
}

#[inline(never)]
fn reader_lookup(table: &RwLock<Vec<u64>>, key: usize) -> u64 {
    let guard = table.read().unwrap();
    guard[key % guard.len()]
}

fn std_rwlock() {
    let table = Arc::new(RwLock::new(vec![0u64; 64]));
    for i in 1..=3 {
        let table = Arc::clone(&table);
        spawn_named(&format!("reader-{i}"), move || {
            let mut sum = 0;
            for key in 0.. {
                sum += reader_lookup(&table, key);
                black_box(sum);
                thread::sleep(WAITER_PAUSE);
            }
        });
    }
    spawn_named("writer", move || loop {
        thread::sleep(PAUSE);
        rebuild_table(&table);
    });
}

#[inline(never)]
fn rebuild_index_pl(index: &parking_lot::Mutex<Vec<u64>>) {
    let mut guard = index.lock();
    thread::sleep(HOLD);
    for v in guard.iter_mut() {
        *v = 0;
    }
}

#[inline(never)]
fn worker_update_pl(index: &parking_lot::Mutex<Vec<u64>>, key: usize) {
    let mut guard = index.lock();
    let len = guard.len();
    guard[key % len] += 1;
}

fn parking_lot_mutex() {
    let index = Arc::new(parking_lot::Mutex::new(vec![0u64; 64]));
    for i in 1..=3 {
        let index = Arc::clone(&index);
        spawn_named(&format!("worker-{i}"), move || {
            for key in 0.. {
                worker_update_pl(&index, key);
                thread::sleep(WAITER_PAUSE);
            }
        });
    }
    spawn_named("maintainer", move || loop {
        thread::sleep(PAUSE);
        rebuild_index_pl(&index);
    });
}

#[inline(never)]
fn wait_for_job(queue: &(Mutex<u32>, Condvar)) -> u32 {
    let (lock, ready) = queue;
    let mut jobs = lock.lock().unwrap();
    while *jobs == 0 {
        jobs = ready.wait(jobs).unwrap();
    }
    *jobs -= 1;
    *jobs
}

#[inline(never)]
fn wait_for_message(rx: &mpsc::Receiver<u32>) -> Option<u32> {
    rx.recv().ok()
}

fn condvar_pool() {
    let queue = Arc::new((Mutex::new(0u32), Condvar::new()));
    for i in 1..=8 {
        let queue = Arc::clone(&queue);
        spawn_named(&format!("pool-{i}"), move || loop {
            black_box(wait_for_job(&queue));
        });
    }
    let mut senders = Vec::new();
    for i in 1..=4 {
        let (tx, rx) = mpsc::channel::<u32>();
        senders.push(tx);
        spawn_named(&format!("chan-{i}"), move || {
            while let Some(m) = wait_for_message(&rx) {
                black_box(m);
            }
        });
    }
    spawn_named("producer", move || {
        for n in 0u32.. {
            thread::sleep(Duration::from_millis(1500));
            *queue.0.lock().unwrap() += 1;
            queue.1.notify_one();
            let _ = senders[n as usize % senders.len()].send(n);
        }
    });
}

#[inline(never)]
fn load_config(cell: &OnceLock<Vec<u64>>) -> usize {
    cell.get_or_init(|| {
        thread::sleep(Duration::from_secs(1)); // stands for reading the configuration
        vec![1; 64]
    })
    .len()
}

#[inline(never)]
fn read_config(cell: &OnceLock<Vec<u64>>) -> usize {
    cell.get_or_init(|| vec![2; 64]).len()
}

/// Threads stay until the process exits: a thread that ends is an alert of its own.
fn idle_forever() -> ! {
    loop {
        thread::park();
    }
}

fn oncelock() {
    let cell: &'static OnceLock<Vec<u64>> = Box::leak(Box::new(OnceLock::new()));
    spawn_named("initializer", move || {
        black_box(load_config(cell));
        idle_forever();
    });
    // The initializer must be inside get_or_init before the waiters arrive.
    thread::sleep(Duration::from_millis(100));
    for i in 1..=3 {
        spawn_named(&format!("waiter-{i}"), move || {
            black_box(read_config(cell));
            idle_forever();
        });
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    match mode {
        "std-mutex" => std_mutex(),
        "std-rwlock" => std_rwlock(),
        "parking-lot" => parking_lot_mutex(),
        "condvar-pool" => condvar_pool(),
        "oncelock" => oncelock(),
        _ => {
            eprintln!(
                "usage: locks std-mutex|std-rwlock|parking-lot|condvar-pool|oncelock [SECONDS]"
            );
            std::process::exit(2);
        }
    }
    thread::sleep(Duration::from_secs(seconds));
    // Exit without joining: the threads never end on their own.
    std::process::exit(0);
}

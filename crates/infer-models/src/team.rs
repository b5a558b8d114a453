//! A fork-join team for the decode products (and the decode attention between them): helper threads that keep
//! watching between products instead of sleeping.
//!
//! A one-stream decode step of the demo model is 121 matrix products of about 100 µs each, with a little serial
//! work between them. Run on rayon, the other worker finds nothing to steal in that gap, goes to sleep after its 32
//! rounds of yielding, and is woken again by the next product: a futex wake and a reschedule per product, and a
//! product that starts on one thread. Here helpers keep watching for the next product for a while after each one
//! (yielding their core between looks, for [`WATCH`], then they park), so a product starts on every core at once. Hand-rolled: rayon's idle policy is
//! not configurable, and the fork-join crates that spin (for the same reason) bring their own schedulers for all work.
//!
//! One product runs on the team at a time; a caller that finds the team busy (another thread's product) runs its tasks
//! on rayon instead.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long after its last task a helper keeps watching for the next job before it parks: longer than the gaps
/// between the products of a step and between two decode steps. Between looks it yields its core (`sched_yield`),
/// so that rayon's workers (the attention of a batch runs on them) and other runnable threads are never kept waiting
/// by a helper with nothing to do; spinning on the core instead made batched steps 6–11% slower.
const WATCH: Duration = Duration::from_millis(2);

/// A job: `tasks` calls of `f`, each index once.
#[derive(Clone, Copy)]
struct Job {
    /// Only dereferenced while the caller of [`run`] waits for the team (see there), so never after `f` is gone.
    f: *const (dyn Fn(usize) + Sync + 'static),
    tasks: usize,
}

struct Team {
    /// Bumped once per job; helpers run a job when they see a new value.
    epoch: AtomicU64,
    /// The current job: written by the one caller holding `busy` before it bumps `epoch`, read by helpers after.
    job: UnsafeCell<Job>,
    /// The next task index to claim.
    next: AtomicUsize,
    /// Helpers that have not finished with the current job.
    pending: AtomicUsize,
    /// A helper's task panicked.
    panicked: AtomicBool,
    /// Held by the thread whose job the team runs.
    busy: Mutex<()>,
    helpers: Vec<Helper>,
}

struct Helper {
    thread: OnceLock<Thread>,
    /// Set by the helper just before it parks; cleared by the caller that unparks it.
    parked: AtomicBool,
}

// SAFETY: `job` is written only by the caller holding `busy`, before the epoch's release-increment, and read by helpers
// only after acquiring that epoch; the closure behind it is `Sync`.
#[allow(unsafe_code)]
unsafe impl Sync for Team {}
// SAFETY: as above; the raw pointer is only a borrowed closure's address.
#[allow(unsafe_code)]
unsafe impl Send for Team {}

fn team() -> &'static Team {
    static TEAM: OnceLock<&'static Team> = OnceLock::new();
    TEAM.get_or_init(|| {
        let n = rayon::current_num_threads().saturating_sub(1);
        let noop: &'static (dyn Fn(usize) + Sync) = &|_| {};
        let team: &'static Team = Box::leak(Box::new(Team {
            epoch: AtomicU64::new(0),
            job: UnsafeCell::new(Job { f: noop, tasks: 0 }),
            next: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            busy: Mutex::new(()),
            helpers: (0..n)
                .map(|_| Helper {
                    thread: OnceLock::new(),
                    parked: AtomicBool::new(false),
                })
                .collect(),
        }));
        for i in 0..n {
            let spawned = std::thread::Builder::new()
                .name(format!("cmi-team-{i}"))
                .spawn(move || helper(team, i));
            match spawned {
                Ok(handle) => {
                    let _ = team.helpers[i].thread.set(handle.thread().clone());
                }
                // No helper: its share is claimed by the caller and the others (it never counts as pending).
                Err(e) => tracing::warn!(error = %e, "could not start a product helper thread"),
            }
        }
        team
    })
}

/// Runs `f(0)`, …, `f(tasks - 1)` across the team and this thread, and returns when all have run. Tasks are claimed
/// one at a time, so uneven ones balance.
pub(crate) fn run(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    let team = team();
    let guard = match team.busy.try_lock() {
        Ok(g) if tasks > 1 && !team.helpers.is_empty() => g,
        _ => {
            use rayon::prelude::*;
            (0..tasks).into_par_iter().for_each(f);
            return;
        }
    };
    let live = team.helpers.iter().filter(|h| h.thread.get().is_some()).count();
    // SAFETY: only the holder of `busy` writes the job, and no helper reads it now: every helper finished the last
    // job (`pending` reached 0 before its caller returned) and waits for the next epoch. The lifetime is erased, but
    // `f` outlives every use: this function does not return before `pending` is 0 again.
    #[allow(unsafe_code)]
    unsafe {
        *team.job.get() = Job {
            f: std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f),
            tasks,
        };
    }
    team.next.store(0, Ordering::Relaxed);
    team.pending.store(live, Ordering::Relaxed);
    team.epoch.fetch_add(1, Ordering::SeqCst);
    for h in &team.helpers {
        if h.parked.swap(false, Ordering::SeqCst)
            && let Some(t) = h.thread.get()
        {
            t.unpark();
        }
    }
    // A panic here must not leave before the helpers are done with `f`.
    let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| claim(team, f, tasks)));
    while team.pending.load(Ordering::Acquire) != 0 {
        std::hint::spin_loop();
    }
    let theirs = team.panicked.swap(false, Ordering::Relaxed);
    drop(guard);
    if let Err(payload) = mine {
        std::panic::resume_unwind(payload);
    }
    if theirs {
        panic!("a matrix product task panicked on a helper thread");
    }
}

/// Claims and runs tasks of the current job until none are left.
fn claim(team: &Team, f: &(dyn Fn(usize) + Sync), tasks: usize) {
    loop {
        let i = team.next.fetch_add(1, Ordering::Relaxed);
        if i >= tasks {
            return;
        }
        f(i);
    }
}

fn helper(team: &'static Team, index: usize) {
    let me = &team.helpers[index];
    // Not the epoch now: a helper that starts late must still run the jobs published since the team was made.
    let mut seen = 0;
    let mut idle_since = Instant::now();
    loop {
        let epoch = team.epoch.load(Ordering::SeqCst);
        if epoch != seen {
            seen = epoch;
            // SAFETY: the caller wrote the job before its epoch increment, which this load acquired, and keeps it
            // (and the closure) alive until this helper decrements `pending`.
            #[allow(unsafe_code)]
            let job = unsafe { *team.job.get() };
            #[allow(unsafe_code)]
            let f = unsafe { &*job.f };
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| claim(team, f, job.tasks))).is_ok();
            if !ok {
                team.panicked.store(true, Ordering::Relaxed);
            }
            team.pending.fetch_sub(1, Ordering::Release);
            idle_since = Instant::now();
            continue;
        }
        if idle_since.elapsed() < WATCH {
            std::thread::yield_now();
            continue;
        }
        // Idle for a while: park until a caller unparks this helper. The flag is set before the epoch is checked
        // again, and a caller bumps the epoch before it reads the flag, so a job is never missed.
        me.parked.store(true, Ordering::SeqCst);
        while team.epoch.load(Ordering::SeqCst) == seen {
            std::thread::park();
        }
        me.parked.store(false, Ordering::SeqCst);
        idle_since = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_task_runs_once_across_many_jobs_and_after_the_helpers_park() {
        for round in 0..200 {
            let tasks = round % 17 + 1;
            let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            super::run(tasks, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "round {round}");
            if round % 50 == 0 {
                std::thread::sleep(super::WATCH * 2);
            }
        }
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_and_the_team_goes_on() {
        for _ in 0..20 {
            let r = std::panic::catch_unwind(|| super::run(8, &|i| assert!(i != 5, "task {i}")));
            assert!(r.is_err());
        }
        let sum = AtomicUsize::new(0);
        super::run(8, &|i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 28);
    }

    #[test]
    fn products_from_several_threads_at_once_all_complete() {
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    for _ in 0..100 {
                        let sum = AtomicUsize::new(0);
                        super::run(8, &|i| {
                            sum.fetch_add(i + t, Ordering::Relaxed);
                        });
                        assert_eq!(sum.load(Ordering::Relaxed), 28 + 8 * t);
                    }
                });
            }
        });
    }
}

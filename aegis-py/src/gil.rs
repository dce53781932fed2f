//! Deciding without the GIL, and taking it back without a sleep where a short wait will do.
//!
//! A decision runs for a few microseconds without the GIL; the Python half of a call (the
//! caller's loop, converting the request, building the result) holds it for about one. With two
//! threads deciding, the one that finishes its decision often finds the GIL held by the other,
//! and CPython then puts it to sleep on a condition variable: the wake-up costs more than the
//! whole Python half (tens of microseconds on a virtual machine). So the thread that last took
//! the GIL back after a decision leaves a mark (who, when) until it lets the GIL go for its next
//! decision; a thread that finishes its own decision while another thread's mark is fresh spins
//! until the mark is gone, at most [`SPIN`], before asking for the GIL. A mark older than
//! [`FRESH_MICROS`] (its thread went on to other Python code, or blocked) is ignored, and a thread
//! deciding alone never sees a mark but its own.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pyo3::Python;

/// The longest a thread spins for the GIL before asking CPython for it.
const SPIN: Duration = Duration::from_micros(4);

/// How long a mark counts: a Python half takes about a microsecond.
const FRESH_MICROS: u64 = 8;

/// The mark: the thread's number in the top 16 bits, microseconds since [`epoch`] below; 0
/// for none.
static MARK: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn micros() -> u64 {
    u64::try_from(epoch().elapsed().as_micros()).unwrap_or(u64::MAX) & ((1 << 48) - 1)
}

thread_local! {
    /// This thread's number (1 and up; numbers wrap, which only makes the wait less exact).
    static THREAD: u16 = {
        static NEXT: AtomicU16 = AtomicU16::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed).max(1)
    };
}

fn this_thread() -> u64 {
    u64::from(THREAD.try_with(|t| *t).unwrap_or(0))
}

/// Runs `work` without the GIL (as `Python::detach`); then, while another thread's mark is
/// fresh, waits for it briefly before taking the GIL back, and leaves this thread's mark.
pub(crate) fn detached<T: Send>(py: Python<'_>, work: impl FnOnce() -> T + Send) -> T {
    let me = this_thread();
    // This thread lets the GIL go: its mark, if it is still the mark, goes.
    let mine = MARK.load(Ordering::Acquire);
    if mine >> 48 == me {
        let _ = MARK.compare_exchange(mine, 0, Ordering::AcqRel, Ordering::Relaxed);
    }
    let out = py.detach(|| {
        let out = work();
        // The clock is read only while another thread's mark stands (alone, never).
        let mut start = None;
        loop {
            let mark = MARK.load(Ordering::Acquire);
            let other_holds = mark != 0 && mark >> 48 != me && micros().saturating_sub(mark & ((1 << 48) - 1)) < FRESH_MICROS;
            if !other_holds || start.get_or_insert_with(Instant::now).elapsed() >= SPIN {
                break;
            }
            std::hint::spin_loop();
        }
        out
    });
    MARK.store((me << 48) | micros(), Ordering::Release);
    out
}

//! Waking the open loop's visitors on time.
//!
//! tokio's timer counts whole milliseconds: a sleep ends at the first tick of
//! its wheel after the deadline, and a parked runtime waits in `epoll_wait`,
//! whose timeout is whole milliseconds too. A message due 0.1 ms after a tick
//! goes out up to a millisecond late, and its latency, counted from when it
//! was due, carries that delay as if the target had caused it. The pacer
//! keeps the visitors' deadlines in a heap and arms one `timerfd` for the
//! earliest; the timer's expiry makes the runtime's own epoll ready, so the
//! visitor is woken on the same thread, without a thread of its own.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, FromRawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Wakes futures at their deadlines; its task stops when the last handle is
/// dropped.
#[derive(Clone)]
pub struct Pacer {
    handle: Arc<Handle>,
}

/// Dropping the last handle stops the pacer's task.
struct Handle {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    timer: AsyncFd<OwnedFd>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    due: BinaryHeap<Reverse<Due>>,
    /// Orders deadlines that fall on the same instant.
    next: u64,
    /// The deadline the timer is set for.
    armed: Option<Instant>,
}

struct Due {
    at: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl Pacer {
    /// Creates the timer and spawns the task that wakes sleepers; must be
    /// called from within a tokio runtime.
    pub fn start() -> io::Result<Pacer> {
        // SAFETY: the OwnedFd is the timer's only owner and moves into the
        // AsyncFd, so the descriptor stays open and the same until it drops.
        let timer = unsafe { AsyncFd::register_with_interest(timerfd()?, Interest::READABLE) }
            .map_err(io::Error::from)?;
        let shared = Arc::new(Shared {
            timer,
            state: Mutex::new(State::default()),
        });
        let task = tokio::spawn(run(shared.clone()));
        Ok(Pacer {
            handle: Arc::new(Handle { shared, task }),
        })
    }

    /// A future that is ready once `at` has passed.
    pub fn sleep_until(&self, at: Instant) -> Sleep {
        Sleep {
            pacer: self.clone(),
            at,
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Entries are popped before they are woken, so a panic cannot leave
        // the heap half changed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the timer for `at` (at once if it has passed).
    fn arm(&self, state: &mut State, at: Instant) {
        state.armed = Some(at);
        let wait = at
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        if let Err(e) = set_timer(&self.timer, wait) {
            eprintln!("frontdesk-load: the pacer's timer could not be set: {e}");
        }
    }

    fn wake_at(&self, at: Instant, waker: &Waker) {
        let mut state = self.lock();
        let seq = state.next;
        state.next += 1;
        state.due.push(Reverse(Due {
            at,
            seq,
            waker: waker.clone(),
        }));
        if state.armed.is_none_or(|armed| at < armed) {
            self.arm(&mut state, at);
        }
    }

    /// Wakes every sleeper whose deadline has passed and sets the timer for
    /// the next one.
    fn fire(&self, woken: &mut Vec<Waker>) {
        let mut state = self.lock();
        let now = Instant::now();
        while state.due.peek().is_some_and(|Reverse(d)| d.at <= now) {
            if let Some(Reverse(d)) = state.due.pop() {
                woken.push(d.waker);
            }
        }
        match state.due.peek().map(|Reverse(d)| d.at) {
            Some(next) => self.arm(&mut state, next),
            None => state.armed = None,
        }
        drop(state);
        woken.drain(..).for_each(Waker::wake);
    }
}

async fn run(shared: Arc<Shared>) {
    let mut woken = Vec::new();
    loop {
        let Ok(mut ready) = shared.timer.readable().await else {
            return;
        };
        // The expiry count is read to clear the timer's readiness; a read
        // that would block means another expiry was already taken.
        if ready.try_io(|fd| read_expiries(fd.get_ref())).is_err() {
            continue;
        }
        // A read takes every expiry so far: the timer is drained, and waiting
        // for the next one need not try another read first.
        ready.clear_ready();
        shared.fire(&mut woken);
    }
}

/// Ready once its instant has passed.
pub struct Sleep {
    pacer: Pacer,
    at: Instant,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        // Polled again before its time (another branch of a select woke the
        // task): registering again leaves a stale entry, which only wakes the
        // task once more.
        self.pacer.handle.shared.wake_at(self.at, cx.waker());
        Poll::Pending
    }
}

/// Elsewhere than Linux there is no timerfd: the open loop then keeps
/// tokio's millisecond timer.
#[cfg(not(target_os = "linux"))]
fn timerfd() -> io::Result<OwnedFd> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the pacer needs Linux's timerfd",
    ))
}

#[cfg(not(target_os = "linux"))]
fn set_timer(_: &AsyncFd<OwnedFd>, _: Duration) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(not(target_os = "linux"))]
fn read_expiries(_: &OwnedFd) -> io::Result<u64> {
    Err(io::ErrorKind::Unsupported.into())
}

/// A non-blocking monotonic timerfd.
#[cfg(target_os = "linux")]
fn timerfd() -> io::Result<OwnedFd> {
    // SAFETY: timerfd_create takes integer flags and returns a new descriptor
    // or -1.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets the timer to expire once, `wait` from now.
#[cfg(target_os = "linux")]
fn set_timer(fd: &AsyncFd<OwnedFd>, wait: Duration) -> io::Result<()> {
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: `spec` is a valid itimerspec that outlives the call, and a null
    // old value is allowed.
    let rc = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the timer's expiry count (would block if it has not expired).
#[cfg(target_os = "linux")]
fn read_expiries(fd: &OwnedFd) -> io::Result<u64> {
    let mut count = [0u8; 8];
    // SAFETY: `count` is 8 writable bytes, as a timerfd read needs.
    let n = unsafe { libc::read(fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from_ne_bytes(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_each_sleeper_at_its_deadline_in_order() {
        let pacer = Pacer::start().unwrap();
        let start = Instant::now();
        let order = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = [30u64, 10, 20]
            .into_iter()
            .map(|ms| {
                let (pacer, order) = (pacer.clone(), order.clone());
                tokio::spawn(async move {
                    let at = start + Duration::from_millis(ms);
                    pacer.sleep_until(at).await;
                    assert!(Instant::now() >= at, "woken before its deadline");
                    order.lock().unwrap().push(ms);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![10, 20, 30]);
    }

    #[tokio::test]
    async fn a_deadline_already_past_is_ready_at_once() {
        let pacer = Pacer::start().unwrap();
        let past = Instant::now() - Duration::from_millis(5);
        tokio::time::timeout(Duration::from_secs(5), pacer.sleep_until(past))
            .await
            .expect("ready without the timer");
    }

    #[tokio::test]
    async fn a_later_sleeper_does_not_delay_an_earlier_one() {
        let pacer = Pacer::start().unwrap();
        let start = Instant::now();
        // The timer is armed for the later deadline first.
        let late = tokio::spawn({
            let pacer = pacer.clone();
            async move { pacer.sleep_until(start + Duration::from_secs(30)).await }
        });
        tokio::task::yield_now().await;
        tokio::time::timeout(
            Duration::from_secs(5),
            pacer.sleep_until(start + Duration::from_millis(10)),
        )
        .await
        .expect("woken at its own deadline");
        late.abort();
    }
}

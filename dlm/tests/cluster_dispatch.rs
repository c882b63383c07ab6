//! `Lockspace::dispatch` on a poll-mode handle while another thread of the
//! process is reading its descriptor (issue 15, defect 7): the call waits
//! for the other reader and then reads, so an answer that made the
//! descriptor readable is applied before it returns. It once returned
//! `Ok` without reading when another thread was reading, and
//! `dlm::tokio::drive` then cleared the descriptor's readiness: an answer
//! that came after the other reader's last read sat unread until the next
//! one arrived.
//!
//! The other reader is a blocking call on the same handle: its wait reads
//! until its own answer and stops there. A future's waker that blocks
//! (user code runs on the reading thread: `Waker::wake`) holds it inside
//! its read while a second future's answer arrives behind the blocking
//! call's own, so the order in the descriptor is known: the first future's
//! answer, the blocking call's, the second future's. Nothing here depends
//! on timing but two pauses that only need to be long enough.

mod common;

use dlm::{Lockspace, Mode};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// A waker whose `wake` blocks until the gate is opened, and says it was
/// entered.
#[derive(Default)]
struct Gate {
    entered: AtomicBool,
    open: Mutex<bool>,
    opened: Condvar,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.entered.store(true, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        let limit = Instant::now() + Duration::from_secs(20);
        while !*open && Instant::now() < limit {
            open = self
                .opened
                .wait_timeout(open, Duration::from_millis(50))
                .unwrap()
                .0;
        }
    }
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

fn poll_once<F: Future>(f: std::pin::Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(waker))
}

#[test]
fn dispatch_reads_the_answer_another_reader_left() {
    require_cluster!();
    let name = common::ls_name("dispatch");
    let ls = Lockspace::builder(&name)
        .poll_mode()
        .create_exclusive()
        .unwrap();
    let noop = futures::task::noop_waker();
    let gate = Arc::new(Gate::default());
    let gate_waker = Waker::from(gate.clone());

    // 1. The first future's request; its answer waits in the descriptor.
    let mut first = Box::pin(ls.lock_async("first", Mode::Ex));
    assert!(poll_once(first.as_mut(), &gate_waker).is_pending());
    std::thread::sleep(Duration::from_millis(200));

    // 2. A blocking call on another thread: it writes its request, reads
    // the first future's answer on the way, and blocks in that future's
    // waker, inside its read.
    let blocking = {
        let ls = ls.clone();
        std::thread::spawn(move || ls.lock("own", Mode::Ex).map(|g| g.unlock()))
    };
    let start = Instant::now();
    while !gate.entered.load(Ordering::SeqCst) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the blocking call never read the first future's answer"
        );
        std::thread::sleep(Duration::from_millis(1));
    }

    // 3. The second future's request, written (by the handle's worker)
    // while the blocking call is held in its read: its answer comes after
    // the blocking call's own.
    let mut second = Box::pin(ls.lock_async("second", Mode::Ex));
    assert!(poll_once(second.as_mut(), &noop).is_pending());
    std::thread::sleep(Duration::from_millis(300));

    // 4. The gate opens a moment after this thread's dispatch began: the
    // blocking call reads its own answer and stops reading; the dispatch,
    // which waited for it, reads the second future's answer.
    let opener = {
        let gate = gate.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            gate.open();
        })
    };
    ls.dispatch().unwrap();
    let after_dispatch = poll_once(second.as_mut(), &noop);
    opener.join().unwrap();
    blocking.join().unwrap().unwrap().unwrap();
    match after_dispatch {
        Poll::Ready(r) => r.unwrap().unlock().unwrap(),
        Poll::Pending => panic!(
            "dispatch returned with the second future's answer unread \
             (it did not wait for the other reader)"
        ),
    }
    // The first future was answered on the blocking call's thread.
    match poll_once(first.as_mut(), &noop) {
        Poll::Ready(r) => r.unwrap().unlock().unwrap(),
        Poll::Pending => panic!("the first future's answer was lost"),
    }
    drop((first, second));
    if let Err(e) = ls.release(dlm::Release::IfUnused) {
        panic!("locks left behind in {name}: {}", e.error());
    }
}

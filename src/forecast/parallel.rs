//! Independent fits side by side, on as many threads as the machine has cores.

use std::panic;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

/// `items.iter().map(f)`, in order, with the calls spread over up to [`thread::available_parallelism`] scoped
/// threads that take the next item as they finish one. On one core, or for one item, it runs on the calling thread,
/// as it does for whatever threads the system refuses to start.
/// A panic in `f` is resumed on the calling thread once every thread has stopped.
pub(crate) fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = thread::available_parallelism().map_or(1, |n| n.get()).min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                return done;
            };
            done.push((i, f(item)));
        }
    };
    let mut slots: Vec<Option<R>> = items.iter().map(|_| None).collect();
    let mut panicked = None;
    thread::scope(|s| {
        // The calling thread works too: `threads − 1` helpers, fewer if the system will not start them (a pids
        // limit): whatever they do not take, the calling thread does.
        let helpers: Vec<_> = (1..threads)
            .map_while(|_| {
                thread::Builder::new()
                    .name("prescale-fit".into())
                    .spawn_scoped(s, work)
                    .ok()
            })
            .collect();
        let mine = panic::catch_unwind(panic::AssertUnwindSafe(work));
        for result in helpers.into_iter().map(|h| h.join()).chain(std::iter::once(mine)) {
            match result {
                Ok(done) => done.into_iter().for_each(|(i, r)| slots[i] = Some(r)),
                Err(payload) => panicked = Some(payload),
            }
        }
    });
    if let Some(payload) = panicked {
        panic::resume_unwind(payload);
    }
    slots.into_iter().map(|r| r.expect("every item was mapped")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_in_order_whatever_finishes_first() {
        let items: Vec<u64> = (0..37).collect();
        let out = map(&items, |&i| {
            // Early items take longest, so later ones finish first on other threads.
            thread::sleep(std::time::Duration::from_micros((40 - i) * 50));
            i * i
        });
        assert_eq!(out, items.iter().map(|i| i * i).collect::<Vec<_>>());
        assert!(map(&[] as &[u8], |&b| b).is_empty());
        assert_eq!(map(&[7u8], |&b| b + 1), vec![8]);
    }

    #[test]
    fn a_panic_in_one_call_reaches_the_caller() {
        let items: Vec<u32> = (0..8).collect();
        let caught = panic::catch_unwind(|| map(&items, |&i| if i == 5 { panic!("fit {i} failed") } else { i }));
        let payload = caught.expect_err("the panic is resumed");
        assert_eq!(
            payload.downcast_ref::<String>().map(String::as_str),
            Some("fit 5 failed")
        );
    }
}

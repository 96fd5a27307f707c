use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use super::*;

fn limits() -> Limits {
    Limits {
        max_items: 100,
        max_weight: 100,
        pace: Duration::ZERO,
        in_flight: 1,
        queue: 100,
    }
}

/// A handler that records each call's items, holds every call until `gate`
/// lets it go, and answers each item with itself times ten.
#[derive(Clone)]
struct Recorder {
    calls: Arc<Mutex<Vec<Vec<u32>>>>,
    /// Each permit lets one call finish.
    gate: Arc<Semaphore>,
    running: Arc<AtomicUsize>,
    most_running: Arc<AtomicUsize>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            calls: Default::default(),
            gate: Arc::new(Semaphore::new(0)),
            running: Default::default(),
            most_running: Default::default(),
        }
    }
}

impl Recorder {
    fn start(&self, limits: Limits) -> Batcher<u32, u32> {
        let me = self.clone();
        let (batcher, task) = Batcher::new(limits, move |items: Vec<u32>| {
            let me = me.clone();
            async move {
                let now = me.running.fetch_add(1, Ordering::SeqCst) + 1;
                me.most_running.fetch_max(now, Ordering::SeqCst);
                me.calls.lock().unwrap().push(items.clone());
                me.gate.acquire().await.unwrap().forget();
                me.running.fetch_sub(1, Ordering::SeqCst);
                items.into_iter().map(|i| i * 10).collect()
            }
        });
        tokio::spawn(task);
        batcher
    }

    fn calls(&self) -> Vec<Vec<u32>> {
        self.calls.lock().unwrap().clone()
    }

    /// Waits until `n` calls have started (fails if they never do).
    async fn started(&self, n: usize) {
        for _ in 0..100_000 {
            if self.calls.lock().unwrap().len() >= n {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("{n} calls never started; the calls were {:?}", self.calls());
    }
}

fn spawn_submit(
    b: &Batcher<u32, u32>,
    item: u32,
    weight: usize,
    deadline: Option<Instant>,
) -> tokio::task::JoinHandle<Result<u32, Unanswered<u32>>> {
    let b = b.clone();
    tokio::spawn(async move { b.submit(item, weight, deadline).await })
}

/// Lets spawned submitters reach the queue.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_timer_one_call_carries_what_queued_while_another_ran() {
    let r = Recorder::default();
    let b = r.start(limits());
    let first = spawn_submit(&b, 1, 1, None);
    r.started(1).await;
    let rest: Vec<_> = (2..=6).map(|i| spawn_submit(&b, i, 1, None)).collect();
    settle().await;
    r.gate.add_permits(1);
    r.started(2).await;
    r.gate.add_permits(1);
    assert_eq!(first.await.unwrap().unwrap(), 10);
    for (i, h) in (2..=6).zip(rest) {
        assert_eq!(
            h.await.unwrap().unwrap(),
            i * 10,
            "each caller gets its own output"
        );
    }
    assert_eq!(r.calls(), vec![vec![1], vec![2, 3, 4, 5, 6]]);
}

#[tokio::test(start_paused = true)]
async fn an_idle_batcher_sends_at_once_even_when_paced() {
    for pace in [Duration::ZERO, Duration::from_millis(50)] {
        let r = Recorder::default();
        r.gate.add_permits(1);
        let b = r.start(Limits { pace, ..limits() });
        let t0 = Instant::now();
        assert_eq!(b.submit(7, 1, None).await.unwrap(), 70);
        // Paused time moves only when every task waits on a timer.
        assert_eq!(Instant::now() - t0, Duration::ZERO);
    }
}

#[tokio::test(start_paused = true)]
async fn a_paced_call_follows_a_partial_one_after_the_pace_and_a_lone_item_goes_at_once() {
    let r = Recorder::default();
    r.gate.add_permits(100);
    let pace = Duration::from_millis(50);
    let b = r.start(Limits { pace, ..limits() });
    let t0 = Instant::now();
    assert_eq!(b.submit(1, 1, None).await.unwrap(), 10);
    assert_eq!(
        Instant::now() - t0,
        Duration::ZERO,
        "the first call goes at once"
    );
    // Right after a call that was not full: the next starts `pace` after it,
    // with whatever queued meanwhile.
    let queued: Vec<_> = (2..=4).map(|i| spawn_submit(&b, i, 1, None)).collect();
    for h in queued {
        h.await.unwrap().unwrap();
    }
    assert_eq!(Instant::now() - t0, pace);
    assert_eq!(r.calls(), vec![vec![1], vec![2, 3, 4]]);
    // After a quiet spell longer than the pace, an item goes at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t1 = Instant::now();
    assert_eq!(b.submit(5, 1, None).await.unwrap(), 50);
    assert_eq!(Instant::now() - t1, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_call_stays_within_its_bounds_and_never_splits_an_item() {
    let r = Recorder::default();
    let b = r.start(Limits {
        max_weight: 10,
        max_items: 3,
        ..limits()
    });
    let first = spawn_submit(&b, 0, 1, None);
    r.started(1).await;
    // Weights 4, 4, 4 (the third would pass 10), then 25 (alone), then four of 1 (3 at most).
    let mut queued = Vec::new();
    for (item, weight) in [
        (1, 4),
        (2, 4),
        (3, 4),
        (4, 25),
        (5, 1),
        (6, 1),
        (7, 1),
        (8, 1),
    ] {
        queued.push(spawn_submit(&b, item, weight, None));
        settle().await;
    }
    for n in 1..=5 {
        r.gate.add_permits(1);
        r.started(n + 1).await;
    }
    r.gate.add_permits(1);
    first.await.unwrap().unwrap();
    for h in queued {
        h.await.unwrap().unwrap();
    }
    assert_eq!(
        r.calls(),
        vec![
            vec![0],
            vec![1, 2],
            vec![3],
            vec![4],
            vec![5, 6, 7],
            vec![8]
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_item_whose_deadline_passes_in_the_queue_is_never_sent() {
    let r = Recorder::default();
    let b = r.start(limits());
    let busy = spawn_submit(&b, 1, 1, None);
    r.started(1).await;
    let deadline = Instant::now() + Duration::from_millis(100);
    let late = spawn_submit(&b, 2, 1, Some(deadline));
    let gone = spawn_submit(&b, 3, 1, None);
    settle().await;
    gone.abort(); // its caller went away: withdrawn too
    assert!(matches!(late.await.unwrap(), Err(Unanswered::NotSent)));
    r.gate.add_permits(1);
    busy.await.unwrap().unwrap();
    let next = spawn_submit(&b, 4, 1, None);
    r.started(2).await;
    r.gate.add_permits(1);
    assert_eq!(next.await.unwrap().unwrap(), 40);
    assert_eq!(
        r.calls(),
        vec![vec![1], vec![4]],
        "items 2 and 3 never reached the handler"
    );
}

#[tokio::test(start_paused = true)]
async fn an_item_whose_call_is_under_way_at_its_deadline_can_still_learn_its_outcome() {
    let r = Recorder::default();
    let b = r.start(limits());
    let deadline = Instant::now() + Duration::from_millis(100);
    let Err(Unanswered::InFlight(pending)) = b.submit(5, 1, Some(deadline)).await else {
        panic!("the call holds the item past its deadline: it is in flight");
    };
    r.gate.add_permits(1);
    assert_eq!(pending.outcome().await.unwrap(), 50);
}

#[tokio::test(start_paused = true)]
async fn no_more_calls_run_at_once_than_allowed() {
    let r = Recorder::default();
    let b = r.start(Limits {
        in_flight: 2,
        max_items: 1,
        ..limits()
    });
    let all: Vec<_> = (0..6).map(|i| spawn_submit(&b, i, 1, None)).collect();
    r.started(2).await;
    settle().await;
    assert_eq!(r.calls().len(), 2, "two slots: the third call waits");
    for _ in 0..6 {
        r.gate.add_permits(1);
        settle().await;
    }
    for h in all {
        h.await.unwrap().unwrap();
    }
    assert_eq!(r.most_running.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn the_task_answers_everything_queued_before_it_ends() {
    let calls = Arc::new(Mutex::new(0));
    let counted = calls.clone();
    let (b, task) = Batcher::new(limits(), move |items: Vec<u32>| {
        *counted.lock().unwrap() += 1;
        async move { items }
    });
    let submitted: Vec<_> = (0..20).map(|i| spawn_submit(&b, i, 1, None)).collect();
    settle().await;
    drop(b);
    // The submitters hold handles until answered; the task ends after them.
    let task = tokio::spawn(task);
    for (i, h) in submitted.into_iter().enumerate() {
        assert_eq!(h.await.unwrap().unwrap(), i as u32);
    }
    task.await.unwrap();
    assert!(*calls.lock().unwrap() >= 1);
}

#[tokio::test(start_paused = true)]
async fn an_item_its_call_gives_no_output_for_is_lost_not_unsent() {
    let (b, task) = Batcher::new(limits(), |_items: Vec<u32>| async { Vec::<u32>::new() });
    tokio::spawn(task);
    assert!(matches!(b.submit(1, 1, None).await, Err(Unanswered::Lost)));
}

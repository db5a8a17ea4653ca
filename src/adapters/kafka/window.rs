//! The consumer's bookkeeping of the batches in flight, with no client and no runtime in it:
//! which batch may write now (the order per key), whose offsets may move (poll order), and
//! what a shutdown gives up. [`super::consumer`] keeps one [`Window`] for its batch tasks and
//! does what it says; the tests below script the interleavings that are rare in a real run.
//!
//! The rules:
//! - A batch writes only once every earlier batch in the window is written or holds none of
//!   its keys; one still decoding holds back every later batch (its keys are not known yet).
//! - Offsets move strictly in poll order: [`Window::retire`] hands out a batch's receipt only
//!   once it and every batch before it are done.
//! - Shutdown finishes the batches in hand. It gives up only a batch that cannot be written
//!   (a failed write, during or after the shutdown), and with it every later batch that has
//!   not started writing. A later batch that was written anyway stays uncommitted: replayed
//!   after the restart, it is a redelivery.
//! - Nothing moves past a batch given up: no later receipt is ever handed out.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

/// A batch's place in the window: given in poll order, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Polled, still decoding: which keys it holds is not known yet.
    Planning,
    /// Decoded: writing its keys, or waiting for its turn to.
    Writing,
    /// A write failed; waiting out the backoff before the next attempt.
    Backoff,
    /// Its orders are stored and its dead letters delivered: later batches may pass it.
    Written,
    /// Finished: its receipt is handed out once every batch before it is.
    Done,
    /// Given up: neither its receipt nor any later one is ever handed out.
    GivenUp,
}

struct Slot<K, R> {
    id: BatchId,
    stage: Stage,
    keys: HashSet<K>,
    receipt: Option<R>,
}

/// What a batch is to do about writing, now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// An earlier batch still decoding, or writing one of its keys: wait for a change.
    Wait,
    /// Write.
    Write,
    /// An earlier batch was given up (or this one was): give up too.
    GiveUp,
}

/// What a batch whose write failed is to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    Again,
    GiveUp,
}

/// The batches in flight, oldest first. `K` is a batch's key (an order uid), `R` what it
/// hands out when retired (its offsets).
pub struct Window<K, R> {
    slots: VecDeque<Slot<K, R>>,
    next: u64,
    capacity: usize,
    stopping: bool,
}

impl<K: Eq + Hash, R> Window<K, R> {
    /// A window of at most `capacity` batches (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            slots: VecDeque::new(),
            next: 0,
            capacity: capacity.max(1),
            stopping: false,
        }
    }

    /// Batches opened and not yet retired.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether another batch may be polled: room in the window, no shutdown, nothing given up.
    pub fn has_room(&self) -> bool {
        !self.stopping && self.slots.len() < self.capacity && !self.has_given_up()
    }

    /// Whether some batch in the window was given up: nothing will be retired any more.
    pub fn has_given_up(&self) -> bool {
        self.slots.iter().any(|s| s.stage == Stage::GivenUp)
    }

    /// A batch polled, behind every batch in the window; `receipt` is what [`Self::retire`]
    /// hands out for it.
    pub fn open(&mut self, receipt: R) -> BatchId {
        let id = BatchId(self.next);
        self.next += 1;
        self.slots.push_back(Slot {
            id,
            stage: Stage::Planning,
            keys: HashSet::new(),
            receipt: Some(receipt),
        });
        id
    }

    /// The batch is decoded and holds `keys`.
    pub fn planned(&mut self, id: BatchId, keys: HashSet<K>) {
        if let Some(slot) = self.slot_mut(id)
            && slot.stage == Stage::Planning
        {
            slot.keys = keys;
            slot.stage = Stage::Writing;
        }
    }

    /// Whether the batch may write now.
    pub fn turn(&self, id: BatchId) -> Turn {
        let Some(at) = self.slots.iter().position(|s| s.id == id) else {
            return Turn::GiveUp;
        };
        let ours = &self.slots[at];
        if ours.stage == Stage::GivenUp {
            return Turn::GiveUp;
        }
        let earlier = self.slots.range(..at);
        if earlier.clone().any(|s| s.stage == Stage::GivenUp) {
            return Turn::GiveUp;
        }
        let holds_back = |s: &Slot<K, R>| match s.stage {
            Stage::Planning => true,
            Stage::Writing | Stage::Backoff => !s.keys.is_disjoint(&ours.keys),
            Stage::Written | Stage::Done | Stage::GivenUp => false,
        };
        if ours.stage == Stage::Planning || earlier.clone().any(holds_back) {
            Turn::Wait
        } else {
            Turn::Write
        }
    }

    /// The batch gives up (its turn said so).
    pub fn give_up(&mut self, id: BatchId) {
        if let Some(slot) = self.slot_mut(id)
            && slot.stage != Stage::Done
        {
            slot.stage = Stage::GivenUp;
        }
    }

    /// A write of the batch failed: back off and try again, or, once shutdown has come,
    /// give up.
    pub fn failed(&mut self, id: BatchId) -> Retry {
        let stopping = self.stopping;
        match self.slot_mut(id) {
            Some(slot) if slot.stage == Stage::Writing && !stopping => {
                slot.stage = Stage::Backoff;
                Retry::Again
            }
            Some(slot) => {
                slot.stage = Stage::GivenUp;
                Retry::GiveUp
            }
            None => Retry::GiveUp,
        }
    }

    /// The backoff is over: write again, unless a shutdown gave the batch up meanwhile.
    pub fn retry(&mut self, id: BatchId) -> Retry {
        match self.slot_mut(id) {
            Some(slot) if slot.stage == Stage::Backoff => {
                slot.stage = Stage::Writing;
                Retry::Again
            }
            _ => Retry::GiveUp,
        }
    }

    /// Whether the batch was given up (by itself, or by a shutdown during its backoff).
    pub fn is_given_up(&self, id: BatchId) -> bool {
        self.slots
            .iter()
            .find(|s| s.id == id)
            .is_none_or(|s| s.stage == Stage::GivenUp)
    }

    /// The batch's orders are stored and its dead letters delivered.
    pub fn written(&mut self, id: BatchId) {
        if let Some(slot) = self.slot_mut(id)
            && slot.stage == Stage::Writing
        {
            slot.stage = Stage::Written;
            // Nothing later waits on its keys any more.
            slot.keys = HashSet::new();
        }
    }

    /// The batch is finished: its receipt may be handed out in turn.
    pub fn done(&mut self, id: BatchId) {
        if let Some(slot) = self.slot_mut(id)
            && slot.stage == Stage::Written
        {
            slot.stage = Stage::Done;
        }
    }

    /// Shutdown: no batch is opened any more, and every batch waiting out a backoff (the
    /// database cannot take it) is given up. Batches waiting for their turn or writing are
    /// finished.
    pub fn stop(&mut self) {
        self.stopping = true;
        for slot in &mut self.slots {
            if slot.stage == Stage::Backoff {
                slot.stage = Stage::GivenUp;
            }
        }
    }

    /// A batch's task failed: every batch in the window is given up, done ones too.
    pub fn give_up_all(&mut self) {
        for slot in &mut self.slots {
            slot.stage = Stage::GivenUp;
        }
    }

    /// Takes out the finished batches at the front of the window and hands out their
    /// receipts, oldest first. Stops at the first batch not done.
    pub fn retire(&mut self) -> Vec<R> {
        let mut receipts = Vec::new();
        while self.slots.front().is_some_and(|s| s.stage == Stage::Done) {
            if let Some(receipt) = self.slots.pop_front().and_then(|s| s.receipt) {
                receipts.push(receipt);
            }
        }
        receipts
    }

    fn slot_mut(&mut self, id: BatchId) -> Option<&mut Slot<K, R>> {
        self.slots.iter_mut().find(|s| s.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type W = Window<&'static str, &'static str>;

    fn keys(ks: &[&'static str]) -> HashSet<&'static str> {
        ks.iter().copied().collect()
    }

    /// Opens a batch and plans it with `ks`.
    fn batch(w: &mut W, receipt: &'static str, ks: &[&'static str]) -> BatchId {
        let id = w.open(receipt);
        w.planned(id, keys(ks));
        id
    }

    fn finish(w: &mut W, id: BatchId) {
        assert_eq!(w.turn(id), Turn::Write);
        w.written(id);
        w.done(id);
    }

    #[test]
    fn a_batch_sharing_a_key_waits_for_the_earlier_one_to_be_written_and_a_disjoint_one_does_not() {
        let mut w = W::new(3);
        let b1 = batch(&mut w, "1", &["a", "b"]);
        let b2 = batch(&mut w, "2", &["b"]);
        let b3 = batch(&mut w, "3", &["c"]);
        assert_eq!(w.turn(b1), Turn::Write);
        assert_eq!(w.turn(b2), Turn::Wait);
        assert_eq!(w.turn(b3), Turn::Write);
        // Written, not yet done: enough for b2 to pass.
        w.written(b1);
        assert_eq!(w.turn(b2), Turn::Write);
    }

    #[test]
    fn a_batch_still_decoding_holds_back_every_later_batch() {
        let mut w = W::new(3);
        let b1 = w.open("1");
        let b2 = batch(&mut w, "2", &["z"]);
        assert_eq!(w.turn(b1), Turn::Wait, "not planned: it has no keys yet");
        assert_eq!(w.turn(b2), Turn::Wait);
        w.planned(b1, keys(&["a"]));
        assert_eq!(w.turn(b1), Turn::Write);
        assert_eq!(w.turn(b2), Turn::Write);
    }

    #[test]
    fn a_batch_in_backoff_still_holds_its_keys() {
        let mut w = W::new(2);
        let b1 = batch(&mut w, "1", &["a"]);
        let b2 = batch(&mut w, "2", &["a"]);
        assert_eq!(w.failed(b1), Retry::Again);
        assert_eq!(w.turn(b2), Turn::Wait);
        assert_eq!(w.retry(b1), Retry::Again);
        assert_eq!(w.turn(b2), Turn::Wait);
        w.written(b1);
        assert_eq!(w.turn(b2), Turn::Write);
    }

    #[test]
    fn offsets_move_in_poll_order_whichever_batch_finishes_first() {
        let mut w = W::new(3);
        let b1 = batch(&mut w, "1", &["a"]);
        let b2 = batch(&mut w, "2", &["a"]);
        let b3 = batch(&mut w, "3", &["c"]);
        finish(&mut w, b3);
        assert!(w.retire().is_empty(), "b3 is done but b1 and b2 are not");
        assert_eq!(w.len(), 3);
        finish(&mut w, b1);
        assert_eq!(w.retire(), vec!["1"]);
        finish(&mut w, b2);
        assert_eq!(w.retire(), vec!["2", "3"]);
        assert!(w.is_empty());
        // Written is not done: its receipt waits for the announcement to finish.
        let b4 = batch(&mut w, "4", &["d"]);
        w.written(b4);
        assert!(w.retire().is_empty());
        w.done(b4);
        assert_eq!(w.retire(), vec!["4"]);
    }

    #[test]
    fn the_window_has_room_for_its_capacity_and_none_after_shutdown() {
        let mut w = W::new(2);
        assert!(w.has_room());
        let b1 = batch(&mut w, "1", &["a"]);
        assert!(w.has_room());
        batch(&mut w, "2", &["b"]);
        assert!(!w.has_room());
        finish(&mut w, b1);
        w.retire();
        assert!(w.has_room());
        w.stop();
        assert!(!w.has_room());
        assert!(W::new(0).has_room(), "a window holds at least one batch");
    }

    /// The shutdown bug of 64208c5: a shutdown arriving while b2 waits for b1 gave b2 up,
    /// and b3, already written, stayed stored and uncommitted.
    #[test]
    fn shutdown_between_a_waiting_batch_and_a_written_one_gives_nothing_up() {
        let mut w = W::new(3);
        let b1 = batch(&mut w, "1", &["a"]);
        let b2 = batch(&mut w, "2", &["a"]);
        let b3 = batch(&mut w, "3", &["c"]);
        finish(&mut w, b3);
        assert_eq!(w.turn(b2), Turn::Wait);
        w.stop();
        assert_eq!(w.turn(b2), Turn::Wait, "still waiting, not given up");
        assert!(!w.is_given_up(b2));
        finish(&mut w, b1);
        finish(&mut w, b2);
        assert_eq!(
            w.retire(),
            vec!["1", "2", "3"],
            "everything stored is committed"
        );
        assert!(w.is_empty());
    }

    #[test]
    fn shutdown_during_a_backoff_gives_up_that_batch_and_every_later_one_not_yet_writing() {
        let mut w = W::new(4);
        let b1 = batch(&mut w, "1", &["a"]);
        let b2 = batch(&mut w, "2", &["a"]);
        let b3 = batch(&mut w, "3", &["c"]);
        let b4 = w.open("4");
        // b3 writes past b1 (disjoint) while b1 fails: the database came back for b3 only.
        finish(&mut w, b3);
        assert_eq!(w.failed(b1), Retry::Again);
        w.stop();
        assert!(w.is_given_up(b1), "the backoff ends at once");
        assert_eq!(w.retry(b1), Retry::GiveUp);
        assert_eq!(w.turn(b2), Turn::GiveUp);
        w.give_up(b2);
        w.planned(b4, keys(&["d"]));
        assert_eq!(
            w.turn(b4),
            Turn::GiveUp,
            "behind a given-up batch, even disjoint"
        );
        // b3 was written: it stays uncommitted and is replayed after the restart.
        assert!(w.retire().is_empty());
        assert!(w.has_given_up());
        assert_eq!(w.len(), 4, "nothing retired past b1");
    }

    #[test]
    fn a_write_failing_after_shutdown_gives_up_and_one_failing_before_backs_off() {
        let mut w = W::new(2);
        let b1 = batch(&mut w, "1", &["a"]);
        let b2 = batch(&mut w, "2", &["b"]);
        assert_eq!(w.turn(b2), Turn::Write, "disjoint: b2 writes beside b1");
        assert_eq!(w.failed(b1), Retry::Again);
        assert_eq!(w.retry(b1), Retry::Again);
        w.stop();
        // b1 was writing (not in its backoff) when the shutdown came: it may finish.
        assert!(!w.is_given_up(b1));
        assert_eq!(w.failed(b1), Retry::GiveUp);
        assert!(w.is_given_up(b1));
        // b2 was already writing: it finishes, and stays uncommitted behind b1.
        w.written(b2);
        w.done(b2);
        assert!(w.retire().is_empty());
    }

    #[test]
    fn a_failed_task_gives_up_the_whole_window_done_batches_too() {
        let mut w = W::new(3);
        let b1 = batch(&mut w, "1", &["a"]);
        let b2 = batch(&mut w, "2", &["b"]);
        finish(&mut w, b1);
        w.give_up_all();
        assert!(
            w.retire().is_empty(),
            "a done batch at the front is not retired"
        );
        assert_eq!(w.turn(b2), Turn::GiveUp);
        assert!(!w.has_room());
    }

    #[test]
    fn an_unknown_or_retired_batch_never_writes() {
        let mut w = W::new(1);
        let b1 = batch(&mut w, "1", &["a"]);
        finish(&mut w, b1);
        w.retire();
        assert_eq!(w.turn(b1), Turn::GiveUp);
        assert_eq!(w.failed(b1), Retry::GiveUp);
        assert!(w.is_given_up(b1));
    }

    mod interleavings {
        use super::*;
        use proptest::prelude::*;

        /// A step of a scripted run: which open batch (by index) does its next move.
        fn run(capacity: usize, plans: Vec<Vec<u8>>, steps: Vec<(usize, bool)>, stop_at: usize) {
            let mut w: Window<u8, usize> = Window::new(capacity);
            let mut ids = Vec::new();
            let mut opened = 0;
            let mut retired = Vec::new();
            // Per batch opened: whether it was written, whether it waits out a backoff.
            let mut written: Vec<bool> = Vec::new();
            let mut backing_off: Vec<bool> = Vec::new();
            for (n, (pick, fail)) in steps.into_iter().enumerate() {
                if n == stop_at {
                    w.stop();
                }
                if w.has_room() && opened < plans.len() {
                    ids.push(w.open(opened));
                    written.push(false);
                    backing_off.push(false);
                    opened += 1;
                }
                if ids.is_empty() {
                    break;
                }
                let i = pick % ids.len();
                let id = ids[i];
                if backing_off[i] {
                    backing_off[i] = false;
                    w.retry(id);
                    retired.extend(w.retire());
                    continue;
                }
                match w.turn(id) {
                    Turn::GiveUp => w.give_up(id),
                    Turn::Wait => w.planned(id, plans[i].iter().copied().collect()),
                    Turn::Write if fail => backing_off[i] = w.failed(id) == Retry::Again,
                    Turn::Write => {
                        // No earlier batch still unwritten shares a key with this one.
                        for j in 0..i {
                            if !written[j] && !w.is_given_up(ids[j]) {
                                let shared = plans[j].iter().any(|k| plans[i].contains(k));
                                assert!(!shared, "batch {i} writes before {j}, which shares a key");
                            }
                        }
                        w.written(id);
                        w.done(id);
                        written[i] = true;
                    }
                }
                retired.extend(w.retire());
            }
            // Receipts come out in poll order, each once, and only of written batches.
            assert!(
                retired.iter().enumerate().all(|(n, r)| n == *r),
                "{retired:?}"
            );
            assert!(retired.iter().all(|r| written[*r]));
        }

        proptest! {
            #[test]
            fn order_per_key_and_poll_order_hold_in_any_interleaving(
                capacity in 1usize..5,
                plans in prop::collection::vec(prop::collection::vec(0u8..4, 0..3), 1..8),
                steps in prop::collection::vec((0usize..8, prop::bool::weighted(0.2)), 0..80),
                stop_at in 0usize..100,
            ) {
                run(capacity, plans, steps, stop_at);
            }
        }
    }
}

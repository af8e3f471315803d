//! What of one file the sinks have confirmed, and the batches still in flight: the bookkeeping
//! behind a file's checkpoint.
//!
//! Batches are read in order and each ends at a byte offset. A batch is done when every sink
//! reachable from the source confirmed it. The file's checkpoint (`confirmed`) is the end of
//! the longest run of done batches from the start, never beyond a batch some sink still holds,
//! so a restart reads again at most what was in flight. Each sink also has its own confirmed
//! offset (the end of the longest prefix *it* confirmed): after a restart, a sink skips whole
//! batches it had already confirmed, which bounds duplicates.

use std::collections::VecDeque;

/// One batch read from a file and not yet confirmed by every sink.
struct Pending {
    id: u64,
    end: u64,
    /// Per reachable sink (slot order of the source's paths).
    done: Vec<bool>,
}

pub struct Progress {
    pending: VecDeque<Pending>,
    /// Every sink confirmed everything before this offset: the checkpoint.
    pub confirmed: u64,
    /// Per sink slot, the end of the longest prefix that sink confirmed (at least `confirmed`).
    pub sink_confirmed: Vec<u64>,
}

impl Progress {
    /// Resume at `confirmed`, with each sink's own confirmed offset.
    pub fn new(confirmed: u64, sink_confirmed: Vec<u64>) -> Progress {
        Progress { pending: VecDeque::new(), confirmed, sink_confirmed }
    }

    /// The file was truncated: everything starts again at 0.
    pub fn reset(&mut self) {
        self.pending.clear();
        self.confirmed = 0;
        self.sink_confirmed.iter_mut().for_each(|o| *o = 0);
    }

    /// Whether a batch is waiting for a confirmation.
    pub fn in_flight(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The first offset after `offset` where some sink's confirmed range ends: a batch read
    /// from `offset` must stop there, so that sink can skip whole batches.
    pub fn next_cut(&self, offset: u64) -> Option<u64> {
        self.sink_confirmed.iter().copied().filter(|&o| o > offset).min()
    }

    /// The sink slots that already confirmed everything up to `end` (before a restart): they
    /// skip the batch ending there.
    pub fn confirmed_through(&self, end: u64) -> impl Iterator<Item = usize> + '_ {
        self.sink_confirmed.iter().enumerate().filter(move |(_, &o)| o >= end).map(|(slot, _)| slot)
    }

    /// Batch `id`, ending at `end`, was sent.
    pub fn sent(&mut self, id: u64, end: u64) {
        self.pending.push_back(Pending { id, end, done: vec![false; self.sink_confirmed.len()] });
    }

    /// Move the checkpoint to `end` for lines nothing needs to confirm (headers, blank lines,
    /// or acknowledgements off), unless a batch is in flight. Whether it moved.
    pub fn advance_unconfirmed(&mut self, end: u64) -> bool {
        if self.in_flight() {
            return false;
        }
        self.confirmed = end;
        self.sink_confirmed.iter_mut().for_each(|o| *o = (*o).max(end));
        true
    }

    /// Sink `slot` (or, with `None`, every sink) confirmed batch `id`. Returns the ids of the
    /// batches now done by every sink, whose checkpoint moved. An unknown id changes nothing.
    pub fn complete(&mut self, id: u64, slot: Option<usize>) -> Vec<u64> {
        let Some(p) = self.pending.iter_mut().find(|p| p.id == id) else { return Vec::new() };
        match slot {
            None => p.done.iter_mut().for_each(|d| *d = true),
            Some(slot) => {
                if let Some(d) = p.done.get_mut(slot) {
                    *d = true;
                }
            }
        }
        for (slot, confirmed) in self.sink_confirmed.iter_mut().enumerate() {
            for p in &self.pending {
                if !p.done[slot] {
                    break;
                }
                *confirmed = (*confirmed).max(p.end);
            }
        }
        let mut finished = Vec::new();
        while self.pending.front().is_some_and(|p| p.done.iter().all(|d| *d)) {
            let p = self.pending.pop_front().expect("non-empty");
            self.confirmed = p.end;
            finished.push(p.id);
        }
        finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_waits_for_every_sink_and_for_earlier_batches() {
        let mut p = Progress::new(0, vec![0, 0]);
        p.sent(1, 100);
        p.sent(2, 250);
        p.sent(3, 300);
        // The second batch done by both sinks: nothing moves while the first is out.
        assert!(p.complete(2, Some(0)).is_empty());
        assert!(p.complete(2, Some(1)).is_empty());
        assert_eq!(p.confirmed, 0);
        // The first batch confirmed by sink 0 only: sink 0's own offset moves past both.
        assert!(p.complete(1, Some(0)).is_empty());
        assert_eq!(p.sink_confirmed, vec![250, 0]);
        assert_eq!(p.confirmed, 0);
        // Now sink 1: batches 1 and 2 are done, the checkpoint is at the end of batch 2.
        assert_eq!(p.complete(1, Some(1)), vec![1, 2]);
        assert_eq!(p.confirmed, 250);
        assert_eq!(p.sink_confirmed, vec![250, 250]);
        assert!(p.in_flight());
        assert_eq!(p.complete(3, None), vec![3]);
        assert_eq!((p.confirmed, p.in_flight()), (300, false));
    }

    #[test]
    fn unknown_and_repeated_confirmations_change_nothing() {
        let mut p = Progress::new(10, vec![10]);
        p.sent(5, 20);
        assert!(p.complete(99, None).is_empty());
        assert!(p.complete(5, Some(7)).is_empty(), "a slot out of range is ignored");
        assert_eq!(p.complete(5, Some(0)), vec![5]);
        assert!(p.complete(5, Some(0)).is_empty());
        assert_eq!(p.confirmed, 20);
    }

    #[test]
    fn unconfirmed_lines_move_the_checkpoint_only_when_nothing_is_in_flight() {
        let mut p = Progress::new(0, vec![0, 40]);
        assert!(p.advance_unconfirmed(8));
        assert_eq!((p.confirmed, p.sink_confirmed.clone()), (8, vec![8, 40]));
        p.sent(1, 30);
        assert!(!p.advance_unconfirmed(35));
        assert_eq!(p.confirmed, 8);
    }

    #[test]
    fn after_a_restart_batches_stop_where_a_sink_had_confirmed_and_that_sink_skips_them() {
        // Restarted: every sink confirmed 100, sink 1 had gone on to 180.
        let p = Progress::new(100, vec![100, 180]);
        assert_eq!(p.next_cut(100), Some(180));
        assert_eq!(p.next_cut(180), None);
        assert_eq!(p.confirmed_through(180).collect::<Vec<_>>(), vec![1]);
        assert_eq!(p.confirmed_through(181).count(), 0);
    }

    #[test]
    fn truncation_starts_over() {
        let mut p = Progress::new(50, vec![50, 70]);
        p.sent(1, 90);
        p.reset();
        assert_eq!((p.confirmed, p.sink_confirmed.clone(), p.in_flight()), (0, vec![0, 0], false));
    }
}

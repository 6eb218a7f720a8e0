//! Per-sink delivery state: the cursor and the dead-letter set. Pure logic; persistence and
//! record look-ups live in `store.rs`.
//!
//! Delivery order for a sink: first the *retrying* entries (dead letters an operator re-queued,
//! all older than the cursor) in ascending id order, then the records from `cursor` upward,
//! skipping parked ones. `cursor` is kept *normalised*: it never points at a parked id or at an id
//! that does not exist (ids lost to damage), so the main-stream head is `cursor` itself.

use std::collections::BTreeMap;

/// What the sink needs to know about the journal's id space.
pub(crate) trait Universe {
    /// Smallest id `>= id` that is stored, if any.
    fn next_existing(&self, id: u64) -> Option<u64>;
    /// The id the next append will get.
    fn next_id(&self) -> u64;
    /// Whether `id` is stored.
    fn exists(&self, id: u64) -> bool {
        self.next_existing(id) == Some(id)
    }
}

/// A dead letter (or a re-queued one, `retrying`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParkRec {
    pub(crate) reason: String,
    pub(crate) parked_at_ms: i64,
    pub(crate) received_ms: i64,
    pub(crate) bytes: u64,
    pub(crate) retrying: bool,
}

/// Cursor plus dead letters of one sink.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SinkState {
    /// Every id below `cursor` is acknowledged, parked or retrying; `cursor` itself is pending
    /// (or equal to `next_id`).
    pub(crate) cursor: u64,
    /// Parked and retrying entries by id. Retrying entries are always `< cursor`.
    pub(crate) parked: BTreeMap<u64, ParkRec>,
}

impl SinkState {
    /// Moves the cursor over parked and non-existent ids.
    pub(crate) fn normalize(&mut self, u: &impl Universe) {
        loop {
            match u.next_existing(self.cursor) {
                None => {
                    self.cursor = self.cursor.max(u.next_id());
                    return;
                }
                Some(x) => {
                    self.cursor = x;
                    if self.parked.contains_key(&x) {
                        self.cursor = x + 1;
                    } else {
                        return;
                    }
                }
            }
        }
    }

    fn first_retrying(&self, u: &impl Universe) -> Option<u64> {
        self.parked
            .iter()
            .find(|(id, p)| p.retrying && u.exists(**id))
            .map(|(id, _)| *id)
    }

    /// The entry the sink must deliver next.
    pub(crate) fn head(&self, u: &impl Universe) -> Option<u64> {
        self.first_retrying(u)
            .or((self.cursor < u.next_id()).then_some(self.cursor))
    }

    /// Up to `max` ids in delivery order.
    pub(crate) fn delivery(&self, u: &impl Universe, max: usize) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .parked
            .iter()
            .filter(|(id, p)| p.retrying && u.exists(**id))
            .map(|(id, _)| *id)
            .take(max)
            .collect();
        let mut id = self.cursor;
        while out.len() < max {
            match u.next_existing(id) {
                None => break,
                Some(x) => {
                    if !self.parked.contains_key(&x) {
                        out.push(x);
                    }
                    id = x + 1;
                }
            }
        }
        out
    }

    /// Whether `id` is waiting to be delivered to this sink.
    pub(crate) fn is_pending(&self, id: u64, u: &impl Universe) -> bool {
        match self.parked.get(&id) {
            Some(p) => p.retrying,
            None => id >= self.cursor && id < u.next_id() && u.exists(id),
        }
    }

    /// Acknowledges the head, or the head of the main stream, or any retried dead letter.
    /// `Err(head)` otherwise. The latitude is for a sink that settles lazily: an operator's
    /// retry puts entries in front of ones it has already delivered, and those deliveries
    /// must still count (the order among the two groups does not matter to the cursor).
    pub(crate) fn ack(&mut self, id: u64, u: &impl Universe) -> Result<(), Option<u64>> {
        if self.parked.get(&id).is_some_and(|p| p.retrying) && u.exists(id) {
            self.parked.remove(&id);
            return Ok(());
        }
        if id == self.cursor && id < u.next_id() && !self.parked.contains_key(&id) {
            self.cursor = id + 1;
            self.normalize(u);
            return Ok(());
        }
        Err(self.head(u))
    }

    /// Parks a pending entry. `Err(())` if it is not pending.
    pub(crate) fn park(&mut self, id: u64, rec: ParkRec, u: &impl Universe) -> Result<(), ()> {
        if !self.is_pending(id, u) {
            return Err(());
        }
        self.parked.insert(
            id,
            ParkRec {
                retrying: false,
                ..rec
            },
        );
        self.normalize(u);
        Ok(())
    }

    /// Re-queues a parked entry: one behind the cursor becomes *retrying* (delivered before the
    /// main stream); one ahead of it simply becomes pending again in its natural place.
    pub(crate) fn retry(&mut self, id: u64) -> Result<(), ()> {
        let Some(p) = self.parked.get_mut(&id) else {
            return Err(());
        };
        if p.retrying {
            return Err(());
        }
        if id < self.cursor {
            p.retrying = true;
        } else {
            self.parked.remove(&id);
        }
        Ok(())
    }

    /// Re-queues every parked entry; returns how many.
    pub(crate) fn retry_all(&mut self) -> usize {
        let ids: Vec<u64> = self
            .parked
            .iter()
            .filter(|(_, p)| !p.retrying)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            // Each id was just listed as parked and not retrying.
            let _ = self.retry(*id);
        }
        ids.len()
    }
}

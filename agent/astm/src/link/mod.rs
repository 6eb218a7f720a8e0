//! The E1381 (LIS1-A) data-link state machine, sans I/O, in the quinn-proto shape.
//!
//! Feed received bytes with [`Link::handle_input`], write what [`Link::poll_transmit`] returns,
//! handle what [`Link::poll_event`] returns, and call [`Link::handle_timeout`] when the instant
//! from [`Link::poll_timeout`] has passed. Time only ever comes in as `now`, so every timer is
//! testable in simulated time.
//!
//! # Roles
//! One link can receive (the analyser sends results) and send (the host answers a query, or
//! `labagent simulate` plays an analyser). [`Role`] says which side of the contention rule we are
//! on (LIS1-A §6.2.7: the instrument has priority).
//!
//! # Durable before acknowledged
//! When a frame completes a message, the link emits [`Event::Message`] and holds that frame's
//! reply until the caller calls [`Link::commit`] (reply ACK) or [`Link::refuse`] (reply NAK, and
//! the frame's text is rolled back so the retransmission is taken afresh). Bytes arriving while a
//! reply is held are queued and processed after it.

pub(crate) mod assembler;

pub use assembler::MessageEnd;

use crate::chars::{ACK, ENQ, EOT, NAK};
use crate::frame::{self, Control, Frame, FrameDecoder, FrameError, FrameKind, Item};
use assembler::{Assembler, Found};
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// LIS1-A §6.5.2: a receiver waits 30 s for the next frame or EOT before discarding the message.
/// (Roche analysers use 15 s; configurable.)
pub const RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// LIS1-A §6.2.5 / §6.3.5: a sender waits 15 s for a reply to ENQ or to a frame.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// LIS1-A §6.2.6: after NAK to ENQ (receiver busy) the sender waits at least 10 s.
pub const BUSY_RETRY: Duration = Duration::from_secs(10);
/// LIS1-A §6.2.7: in contention the computer waits at least 20 s before its next ENQ.
pub const CONTENTION_BACKOFF_COMPUTER: Duration = Duration::from_secs(20);
/// LIS1-A §6.2.7: in contention the instrument waits at least 1 s before sending ENQ again.
pub const CONTENTION_BACKOFF_INSTRUMENT: Duration = Duration::from_secs(1);
/// LIS1-A §6.3.5.2: after a receiver interrupt a sender that stops waits 15 s before its next ENQ.
pub const INTERRUPT_HOLDOFF: Duration = Duration::from_secs(15);
/// LIS1-A §6.3.5.1: a frame is sent at most 6 times, then the sender gives up with EOT.
pub const MAX_FRAME_ATTEMPTS: u32 = 6;
/// Establishment attempts (ENQ answered by NAK or nothing) before a message is given up
/// (Roche analysers try 6 times, e411 manual p22).
pub const MAX_ENQ_ATTEMPTS: u32 = 6;
/// Bound on one message's text (all its frames), so a sender cannot exhaust memory.
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Which side of the contention rule this end is on (LIS1-A §6.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The host (labagent as an LIS): yields the line on contention.
    Computer,
    /// The analyser (`labagent simulate`): has priority on contention.
    Instrument,
}

/// Link timers and limits. [`LinkConfig::default`] follows LIS1-A for a computer system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// Our side of the contention rule.
    pub role: Role,
    /// Largest frame text accepted (default 64 KiB: real analysers exceed 240).
    pub max_frame_text: usize,
    /// Largest frame text sent (LIS1-A: 240).
    pub send_frame_text: usize,
    /// Largest message (all frames) accepted.
    pub max_message: usize,
    /// Receiver: time allowed between our reply and the next frame or EOT.
    pub receive_timeout: Duration,
    /// Sender: time allowed for a reply to ENQ or a frame.
    pub reply_timeout: Duration,
    /// Sender: wait after NAK to ENQ.
    pub busy_retry: Duration,
    /// Sender: wait after contention when we are the computer.
    pub contention_backoff_computer: Duration,
    /// Sender: wait after contention when we are the instrument.
    pub contention_backoff_instrument: Duration,
    /// Sender: wait after honouring a receiver interrupt.
    pub interrupt_holdoff: Duration,
    /// Sender: attempts per frame.
    pub max_frame_attempts: u32,
    /// Sender: establishment attempts per message.
    pub max_enq_attempts: u32,
    /// Sender: stop the message when the receiver answers a frame with EOT (LIS1-A allows either;
    /// Roche c311 carries on, which is the default).
    pub honour_interrupt: bool,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            role: Role::Computer,
            max_frame_text: frame::DEFAULT_MAX_TEXT,
            send_frame_text: frame::STANDARD_MAX_TEXT,
            max_message: DEFAULT_MAX_MESSAGE,
            receive_timeout: RECEIVE_TIMEOUT,
            reply_timeout: REPLY_TIMEOUT,
            busy_retry: BUSY_RETRY,
            contention_backoff_computer: CONTENTION_BACKOFF_COMPUTER,
            contention_backoff_instrument: CONTENTION_BACKOFF_INSTRUMENT,
            interrupt_holdoff: INTERRUPT_HOLDOFF,
            max_frame_attempts: MAX_FRAME_ATTEMPTS,
            max_enq_attempts: MAX_ENQ_ATTEMPTS,
            honour_interrupt: false,
        }
    }
}

/// Identifies a message within one link, received or sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}", self.0)
    }
}

/// A complete message received: the records H..L as sent, CR-separated.
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// Pass to [`Link::commit`] or [`Link::refuse`].
    pub id: MessageId,
    /// The concatenated text of its frames (frame numbers and trailers removed).
    pub text: Vec<u8>,
    /// How it ended.
    pub end: MessageEnd,
    /// Whether a frame reply is held for it ([`MessageEnd::Eot`] messages have none).
    pub reply_held: bool,
}

impl fmt::Debug for ReceivedMessage {
    // The text is patient data: never in Debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceivedMessage")
            .field("id", &self.id)
            .field("text_len", &self.text.len())
            .field("end", &self.end)
            .field("reply_held", &self.reply_held)
            .finish()
    }
}

/// Why a frame was answered with NAK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// The frame itself was damaged.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The frame number was neither the expected one nor a repeat of the last accepted one.
    #[error("frame number {got}, expected {expected}")]
    WrongNumber {
        /// The number received.
        got: u8,
        /// The number expected.
        expected: u8,
    },
    /// The message grew beyond the configured limit.
    #[error("message longer than {limit} bytes")]
    MessageTooLong {
        /// The configured limit.
        limit: usize,
    },
    /// The caller refused the message this frame completed (e.g. the store is full).
    #[error("message refused by the host")]
    Refused,
}

/// Why an incomplete received message was dropped (LIS1-A: only complete messages count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscardReason {
    /// No frame or EOT within the receive timeout.
    Timeout,
    /// The sender started a new establishment (ENQ) mid-transfer.
    Restarted,
}

/// Why sending a message failed. The message is dropped from the link's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendFailure {
    /// Every establishment attempt was answered NAK (busy) or not at all.
    #[error("receiver did not accept the line after {attempts} ENQ attempts")]
    NotEstablished {
        /// How many ENQs were sent.
        attempts: u32,
    },
    /// A frame was NAKed on every attempt.
    #[error("frame {number} refused {attempts} times")]
    FrameRefused {
        /// The frame number.
        number: u8,
        /// Attempts made.
        attempts: u32,
    },
    /// No reply to a frame within the reply timeout.
    #[error("no reply to frame {number}")]
    ReplyTimeout {
        /// The frame number.
        number: u8,
    },
    /// The receiver interrupted (EOT) and this link honours interrupts.
    #[error("receiver interrupted the transfer")]
    Interrupted,
}

/// Something the caller should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer's ENQ was accepted; a transfer to us begins.
    Established,
    /// The peer's ENQ was answered NAK because we are busy.
    RefusedBusy,
    /// A frame was accepted (and ACKed, unless it completed a message).
    FrameAccepted {
        /// Its number.
        number: u8,
    },
    /// A repeat of the last accepted frame (its ACK was lost): ACKed and discarded.
    DuplicateFrame {
        /// Its number.
        number: u8,
    },
    /// A frame was answered NAK.
    FrameRejected {
        /// The frame number when it could be read.
        number: Option<u8>,
        /// Why.
        reason: Reject,
    },
    /// A complete message: commit or refuse it.
    Message(ReceivedMessage),
    /// An incomplete message was dropped.
    Discarded {
        /// Why.
        reason: DiscardReason,
        /// How many text bytes were dropped.
        bytes: usize,
    },
    /// The peer ended its transmission (EOT), or the line returned to neutral.
    Terminated,
    /// Both ends sent ENQ; the contention rule was applied.
    Contention,
    /// Our message was delivered: every frame acknowledged.
    Sent(MessageId),
    /// Our message could not be delivered.
    SendFailed {
        /// Which message.
        id: MessageId,
        /// Why.
        reason: SendFailure,
    },
}

/// Counters for telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frame-layer counters (junk bytes, checksum errors).
    pub decoder: frame::DecoderStats,
    /// Frames we answered NAK.
    pub naks_sent: u64,
    /// Complete messages received.
    pub messages_received: u64,
    /// Messages we sent successfully.
    pub messages_sent: u64,
}

/// A frame reply held until the caller decides on the messages it completed.
#[derive(Debug)]
struct Held {
    number: u8,
    waiting: Vec<MessageId>,
    refused: bool,
    /// Assembler state before the frame, restored if refused.
    checkpoint: (usize, assembler::Cursor),
    /// Bytes of the assembler to drop once committed.
    consume_to: usize,
}

#[derive(Debug)]
struct Outgoing {
    id: MessageId,
    frames: Vec<Frame>,
    enq_attempts: u32,
}

#[derive(Debug)]
enum State {
    /// Nothing in progress.
    Neutral,
    /// Receiving frames from the peer.
    Receiving {
        expected: u8,
        last_accepted: Option<u8>,
        held: Option<Held>,
        deadline: Option<Instant>,
    },
    /// We sent ENQ and wait for the reply.
    AwaitEnqReply { deadline: Instant },
    /// We are sending frames of the front message.
    Sending {
        next: usize,
        attempts: u32,
        deadline: Instant,
    },
}

/// The E1381 link state machine. See the module docs.
#[derive(Debug)]
pub struct Link {
    config: LinkConfig,
    state: State,
    decoder: FrameDecoder,
    assembler: Assembler,
    busy: bool,
    next_id: u64,
    outbox: VecDeque<Outgoing>,
    /// No ENQ of ours before this instant.
    holdoff: Option<Instant>,
    transmit: Vec<u8>,
    events: VecDeque<Event>,
    /// Items that arrived while a reply was held, with their total size.
    deferred: VecDeque<Item>,
    deferred_bytes: usize,
    /// Reused buffer for decoded items.
    scratch: Vec<Item>,
    stats: LinkStats,
}

impl Link {
    /// A link in the neutral state.
    pub fn new(config: LinkConfig) -> Self {
        let decoder = FrameDecoder::new(config.max_frame_text);
        Link {
            config,
            state: State::Neutral,
            decoder,
            assembler: Assembler::default(),
            busy: false,
            next_id: 0,
            outbox: VecDeque::new(),
            holdoff: None,
            transmit: Vec::new(),
            events: VecDeque::new(),
            deferred: VecDeque::new(),
            deferred_bytes: 0,
            scratch: Vec::new(),
            stats: LinkStats::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            decoder: self.decoder.stats(),
            ..self.stats
        }
    }

    /// While busy, a peer's ENQ is answered NAK (e.g. the store is full).
    pub fn set_busy(&mut self, busy: bool) {
        self.busy = busy;
    }

    /// True when nothing is in progress and nothing is queued to send.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Neutral) && self.outbox.is_empty()
    }

    /// True when no received message is partly assembled, so the link can be dropped without
    /// losing anything the peer believes delivered. While frames of a message are arriving
    /// this is false: a message ended by EOT alone (no L record) has every frame acknowledged
    /// before the EOT completes it, so stopping then would lose it silently.
    pub fn is_between_messages(&self) -> bool {
        !matches!(self.state, State::Receiving { .. }) || self.assembler.len() == 0
    }

    /// True while a frame's reply is held for [`Link::commit`] / [`Link::refuse`].
    pub fn is_holding(&self) -> bool {
        matches!(self.state, State::Receiving { held: Some(_), .. })
    }

    /// Queues a message (records separated by CR) for sending; returns its id. The link sends
    /// ENQ as soon as the line is neutral and no back-off is running.
    pub fn send(&mut self, text: &[u8], now: Instant) -> MessageId {
        let id = self.new_id();
        let frames = frame::frames_for_message(text, 1, self.config.send_frame_text);
        self.outbox.push_back(Outgoing {
            id,
            frames,
            enq_attempts: 0,
        });
        self.try_start_sending(now);
        id
    }

    /// Bytes to write to the peer, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.transmit.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.transmit))
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest instant at which [`Link::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let state_deadline = match &self.state {
            State::Neutral => None,
            State::Receiving { deadline, .. } => *deadline,
            State::AwaitEnqReply { deadline } | State::Sending { deadline, .. } => Some(*deadline),
        };
        let holdoff = match (&self.state, self.outbox.is_empty()) {
            (State::Neutral, false) => self.holdoff,
            _ => None,
        };
        match (state_deadline, holdoff) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Processes bytes received from the peer.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        let mut items = std::mem::take(&mut self.scratch);
        self.decoder.decode(bytes, |item| items.push(item));
        for item in items.drain(..) {
            self.item(item, now);
        }
        self.scratch = items;
    }

    /// Handles one decoded item, or queues it while a reply is held.
    fn item(&mut self, item: Item, now: Instant) {
        if self.is_holding() {
            // Half duplex: the sender should be silent until our reply. Keep what it sends
            // anyway (usually an EOT after its own timeout), bounded.
            let size = match &item {
                Item::Frame(f) => f.text.len() + 1,
                _ => 1,
            };
            if self.deferred_bytes + size <= self.config.max_message {
                self.deferred_bytes += size;
                self.deferred.push_back(item);
            }
            return;
        }
        self.handle_item(item, now);
    }

    /// Advances timers; call when [`Link::poll_timeout`]'s instant has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::Neutral => {}
            State::Receiving { deadline, .. } => {
                if deadline.is_some_and(|d| now >= d) {
                    let bytes = self.assembler.len();
                    self.assembler.clear();
                    self.decoder.reset();
                    self.state = State::Neutral;
                    if bytes > 0 {
                        self.events.push_back(Event::Discarded {
                            reason: DiscardReason::Timeout,
                            bytes,
                        });
                    }
                    self.events.push_back(Event::Terminated);
                }
            }
            State::AwaitEnqReply { deadline } => {
                if now >= *deadline {
                    // LIS1-A §6.2.5: no reply to ENQ -> EOT, try again later.
                    self.transmit.push(EOT);
                    self.state = State::Neutral;
                    self.enq_failed(now);
                }
            }
            State::Sending { next, deadline, .. } => {
                if now >= *deadline {
                    let number = self
                        .outbox
                        .front()
                        .and_then(|m| m.frames.get(*next))
                        .map_or(0, |f| f.number);
                    self.transmit.push(EOT);
                    self.state = State::Neutral;
                    self.fail_front(SendFailure::ReplyTimeout { number });
                    self.holdoff = Some(now + self.config.busy_retry);
                }
            }
        }
        self.try_start_sending(now);
    }

    /// The caller stored message `id` durably: release the held ACK once every message the
    /// frame completed is decided.
    pub fn commit(&mut self, id: MessageId, now: Instant) {
        self.decide(id, false, now);
    }

    /// The caller could not store message `id`: the completing frame is answered NAK, so the
    /// sender retransmits it and the message is assembled again.
    pub fn refuse(&mut self, id: MessageId, now: Instant) {
        self.decide(id, true, now);
    }

    fn decide(&mut self, id: MessageId, refused: bool, now: Instant) {
        let State::Receiving {
            expected,
            last_accepted,
            held,
            deadline,
        } = &mut self.state
        else {
            return;
        };
        let Some(h) = held else { return };
        let Some(pos) = h.waiting.iter().position(|&w| w == id) else {
            return;
        };
        h.waiting.remove(pos);
        h.refused |= refused;
        if !h.waiting.is_empty() {
            return;
        }
        let Some(h) = held.take() else { return };
        if h.refused {
            self.assembler.rollback(h.checkpoint);
            self.transmit.push(NAK);
            self.stats.naks_sent += 1;
            self.events.push_back(Event::FrameRejected {
                number: Some(h.number),
                reason: Reject::Refused,
            });
        } else {
            self.assembler.consume(h.consume_to);
            self.transmit.push(ACK);
            *last_accepted = Some(h.number);
            *expected = (h.number + 1) % 8;
        }
        *deadline = Some(now + self.config.receive_timeout);
        self.deferred_bytes = 0;
        while !self.is_holding() {
            let Some(item) = self.deferred.pop_front() else {
                break;
            };
            self.handle_item(item, now);
        }
    }

    fn new_id(&mut self) -> MessageId {
        self.next_id += 1;
        MessageId(self.next_id)
    }

    fn handle_item(&mut self, item: Item, now: Instant) {
        match &self.state {
            State::Neutral => self.neutral_item(item, now),
            State::Receiving { .. } => self.receiving_item(item, now),
            State::AwaitEnqReply { .. } => self.enq_reply_item(item, now),
            State::Sending { .. } => self.sending_item(item, now),
        }
    }

    fn neutral_item(&mut self, item: Item, now: Instant) {
        // Only ENQ leaves the neutral state (LIS1-A §6.2); stray replies, EOTs and frames outside
        // a transfer are ignored (the decoder counts what it skipped).
        if let Item::Control(Control::Enq) = item {
            self.accept_enq(now);
        }
    }

    fn accept_enq(&mut self, now: Instant) {
        if self.busy {
            self.transmit.push(NAK);
            self.events.push_back(Event::RefusedBusy);
            return;
        }
        self.transmit.push(ACK);
        self.assembler.clear();
        self.state = State::Receiving {
            expected: 1,
            last_accepted: None,
            held: None,
            deadline: Some(now + self.config.receive_timeout),
        };
        self.events.push_back(Event::Established);
    }

    fn receiving_item(&mut self, item: Item, now: Instant) {
        let State::Receiving {
            expected,
            last_accepted,
            deadline,
            ..
        } = &mut self.state
        else {
            return;
        };
        let (expected, last_accepted) = (*expected, *last_accepted);
        *deadline = Some(now + self.config.receive_timeout);
        match item {
            Item::Control(Control::Eot) => self.end_transmission(),
            Item::Control(Control::Enq) => {
                // The sender restarted: whatever was open is incomplete.
                let bytes = self.assembler.len();
                if bytes > 0 {
                    self.events.push_back(Event::Discarded {
                        reason: DiscardReason::Restarted,
                        bytes,
                    });
                }
                self.state = State::Neutral;
                self.accept_enq(now);
            }
            Item::Control(_) => {}
            // A frame cut short by EOT or ENQ: the sender has moved on (the EOT or ENQ item that
            // follows ends or restarts the transfer), so a NAK would only be a stray byte it
            // may read as "busy". Drop the partial frame silently.
            Item::Bad {
                error: FrameError::Interrupted { by: EOT | ENQ, .. },
                ..
            } => {}
            Item::Bad { number, error, .. } => self.nak(number, Reject::Frame(error)),
            Item::Frame(frame) => {
                if frame.number == expected {
                    self.accept_frame(frame, now);
                } else if Some(frame.number) == last_accepted {
                    // LIS1-A §6.3.4: a retransmission after a lost ACK: ACK and discard.
                    self.transmit.push(ACK);
                    self.events.push_back(Event::DuplicateFrame {
                        number: frame.number,
                    });
                } else {
                    self.nak(
                        Some(frame.number),
                        Reject::WrongNumber {
                            got: frame.number,
                            expected,
                        },
                    );
                }
            }
        }
    }

    fn nak(&mut self, number: Option<u8>, reason: Reject) {
        self.transmit.push(NAK);
        self.stats.naks_sent += 1;
        self.events
            .push_back(Event::FrameRejected { number, reason });
    }

    fn accept_frame(&mut self, frame: Frame, _now: Instant) {
        if self.assembler.len() + frame.text.len() > self.config.max_message {
            let limit = self.config.max_message;
            self.nak(Some(frame.number), Reject::MessageTooLong { limit });
            return;
        }
        let checkpoint = self.assembler.checkpoint();
        let found = self
            .assembler
            .push(&frame.text, frame.kind == FrameKind::Final);
        self.events.push_back(Event::FrameAccepted {
            number: frame.number,
        });
        if found.is_empty() {
            self.transmit.push(ACK);
            if let State::Receiving {
                expected,
                last_accepted,
                ..
            } = &mut self.state
            {
                *last_accepted = Some(frame.number);
                *expected = (frame.number + 1) % 8;
            }
            return;
        }
        let mut waiting = Vec::with_capacity(found.len());
        let mut consume_to = 0;
        for f in &found {
            let id = self.emit_message(*f, true);
            waiting.push(id);
            consume_to = f.end;
        }
        if let State::Receiving { held, deadline, .. } = &mut self.state {
            *held = Some(Held {
                number: frame.number,
                waiting,
                refused: false,
                checkpoint,
                consume_to,
            });
            // The receive timer restarts when our reply goes out.
            *deadline = None;
        }
    }

    fn emit_message(&mut self, found: Found, reply_held: bool) -> MessageId {
        let id = self.new_id();
        self.stats.messages_received += 1;
        let text = self.assembler.text()[found.start..found.end].to_vec();
        self.events.push_back(Event::Message(ReceivedMessage {
            id,
            text,
            end: found.how,
            reply_held,
        }));
        id
    }

    fn end_transmission(&mut self) {
        if let Some(found) = self.assembler.finish() {
            self.emit_message(found, false);
        }
        self.assembler.clear();
        // The decoder is not reset: an EOT item means it is between frames already, and when
        // deferred items are replayed it may be partway into later input.
        self.state = State::Neutral;
        self.events.push_back(Event::Terminated);
    }

    fn try_start_sending(&mut self, now: Instant) {
        if !matches!(self.state, State::Neutral) || self.outbox.is_empty() {
            return;
        }
        if self.holdoff.is_some_and(|h| now < h) {
            return;
        }
        self.holdoff = None;
        if let Some(front) = self.outbox.front_mut() {
            front.enq_attempts += 1;
        }
        self.transmit.push(ENQ);
        self.state = State::AwaitEnqReply {
            deadline: now + self.config.reply_timeout,
        };
    }

    fn enq_failed(&mut self, now: Instant) {
        let attempts = self.outbox.front().map_or(0, |m| m.enq_attempts);
        if attempts >= self.config.max_enq_attempts {
            self.fail_front(SendFailure::NotEstablished { attempts });
        }
        self.holdoff = Some(now + self.config.busy_retry);
    }

    fn fail_front(&mut self, reason: SendFailure) {
        if let Some(m) = self.outbox.pop_front() {
            self.events
                .push_back(Event::SendFailed { id: m.id, reason });
        }
    }

    fn enq_reply_item(&mut self, item: Item, now: Instant) {
        match item {
            Item::Control(Control::Ack) => {
                self.state = State::Sending {
                    next: 0,
                    attempts: 0,
                    deadline: now,
                };
                self.send_current(now);
            }
            Item::Control(Control::Nak) => {
                // LIS1-A §6.2.6: receiver busy; wait at least 10 s.
                self.state = State::Neutral;
                self.enq_failed(now);
            }
            Item::Control(Control::Enq) => {
                // LIS1-A §6.2.7 contention: the instrument has priority.
                self.events.push_back(Event::Contention);
                self.state = State::Neutral;
                if let Some(front) = self.outbox.front_mut() {
                    front.enq_attempts = front.enq_attempts.saturating_sub(1);
                }
                match self.config.role {
                    Role::Computer => {
                        // Yield: the instrument repeats its ENQ after >= 1 s and we answer it.
                        self.holdoff = Some(now + self.config.contention_backoff_computer);
                    }
                    Role::Instrument => {
                        self.holdoff = Some(now + self.config.contention_backoff_instrument);
                    }
                }
            }
            _ => {}
        }
    }

    fn send_current(&mut self, now: Instant) {
        let State::Sending {
            next,
            attempts,
            deadline,
        } = &mut self.state
        else {
            return;
        };
        let Some(message) = self.outbox.front() else {
            self.state = State::Neutral;
            return;
        };
        match message.frames.get(*next) {
            Some(frame) => {
                frame.encode(&mut self.transmit);
                *attempts += 1;
                *deadline = now + self.config.reply_timeout;
            }
            None => {
                // Every frame acknowledged: termination phase.
                self.transmit.push(EOT);
                self.state = State::Neutral;
                if let Some(m) = self.outbox.pop_front() {
                    self.stats.messages_sent += 1;
                    self.events.push_back(Event::Sent(m.id));
                }
                self.try_start_sending(now);
            }
        }
    }

    fn sending_item(&mut self, item: Item, now: Instant) {
        let State::Sending { next, attempts, .. } = &mut self.state else {
            return;
        };
        match item {
            Item::Control(Control::Ack) => {
                *next += 1;
                *attempts = 0;
                self.send_current(now);
            }
            Item::Control(Control::Eot) => {
                // Receiver interrupt (LIS1-A §6.3.5.2): the frame counts as accepted.
                *next += 1;
                *attempts = 0;
                let done = self.outbox.front().is_none_or(|m| *next >= m.frames.len());
                if self.config.honour_interrupt && !done {
                    self.transmit.push(EOT);
                    self.state = State::Neutral;
                    self.fail_front(SendFailure::Interrupted);
                    self.holdoff = Some(now + self.config.interrupt_holdoff);
                } else {
                    self.send_current(now);
                }
            }
            // NAK or any other reply: retransmit the same frame (LIS1-A §6.3.5.1).
            _ => {
                if *attempts >= self.config.max_frame_attempts {
                    let (n, a) = (*next, *attempts);
                    let number = self
                        .outbox
                        .front()
                        .and_then(|m| m.frames.get(n))
                        .map_or(0, |f| f.number);
                    self.transmit.push(EOT);
                    self.state = State::Neutral;
                    self.fail_front(SendFailure::FrameRefused {
                        number,
                        attempts: a,
                    });
                    self.holdoff = Some(now + self.config.busy_retry);
                } else {
                    self.send_current(now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! The frame decoder allocates per frame, never per byte: counted with a global allocator.

use labagent_astm::frame::{Frame, FrameDecoder, FrameKind};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwards the caller's layout unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn allocations_scale_with_frames_not_bytes() {
    let mut bytes = Vec::new();
    let frames = 2_000;
    for i in 0..frames {
        Frame::new((i % 8) as u8, FrameKind::Final, vec![b'x'; 240]).encode(&mut bytes);
    }
    let mut decoder = FrameDecoder::default();
    let mut seen = 0usize;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for chunk in bytes.chunks(512) {
        decoder.decode(chunk, |_| seen += 1);
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(seen, frames);
    // One buffer per emitted frame (the text handed out) plus a little growth: far below the
    // ~500,000 bytes decoded.
    assert!(
        allocations <= 2 * frames + 16,
        "{allocations} allocations for {frames} frames"
    );
}

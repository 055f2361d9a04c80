//! A global allocator that makes reservations no request could fill lazy.
//!
//! `kafka-protocol` (0.18) sizes a `Vec` from an array count read off the wire
//! before decoding any element, so a 20-byte request can ask for hundreds of GiB.
//! With the system allocator the reservation may be refused (aborting the
//! process) or granted as memory the process is charged for. This allocator
//! serves such reservations with `mmap(MAP_NORESERVE)`: address space only, no
//! memory until touched. The decoder then fails on the missing bytes and the
//! mapping is returned, having cost nothing.
//!
//! Which reservations: any of [`LAZY_THRESHOLD_BYTES`] or more, and, while a
//! request frame of `n` bytes is being decoded ([`decoding`]), any above
//! `n * DECODE_AMPLIFICATION_MAX` (and [`DECODE_FLOOR_BYTES`]). A frame's arrays
//! hold at most one element per byte, and no decoded element is that large, so a
//! request that decodes can never need one: only lying counts are made lazy.
//!
//! Lazily mapped blocks are recorded in a small fixed table, so freeing one is
//! recognised whatever the thread or scope; when the table is full, reservations
//! go to the system allocator as usual. Everything else goes to the system
//! allocator unchanged.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Reservations at least this large are always mapped lazily. Far above any
/// legitimate allocation (requests are capped at `request_bytes_max`, 1 GiB).
pub const LAZY_THRESHOLD_BYTES: usize = 1 << 30;

/// While decoding a frame of `n` bytes, reservations above `n` times this are
/// lazy. An array holds at most one element per frame byte, and decoded
/// elements are flat structs far smaller than this.
pub const DECODE_AMPLIFICATION_MAX: usize = 1024;

/// Reservations below this are never made lazy (a page table entry would cost
/// more than the memory).
pub const DECODE_FLOOR_BYTES: usize = 64 * 1024;

/// Page alignment that mmap guarantees.
const PAGE_BYTES: usize = 4096;

/// Lazily mapped blocks at once: failing decodes in flight (one per worker
/// thread) times the nesting of arrays, with room to spare.
const LAZY_SLOTS: usize = 64;

/// Start addresses of the lazily mapped blocks; 0 is a free slot.
static LAZY: [AtomicUsize; LAZY_SLOTS] = [const { AtomicUsize::new(0) }; LAZY_SLOTS];

thread_local! {
    /// The lazy limit of the decode running on this thread (`usize::MAX`: none).
    /// A const-initialised `Cell` needs no allocation, so the allocator may read it.
    static DECODE_LIMIT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Runs `decode` (of a request frame of `frame_len` bytes) with reservations
/// no such frame could fill mapped lazily.
pub fn decoding<R>(frame_len: usize, decode: impl FnOnce() -> R) -> R {
    let limit = frame_len
        .saturating_mul(DECODE_AMPLIFICATION_MAX)
        .max(DECODE_FLOOR_BYTES);
    let before = DECODE_LIMIT.with(|l| l.replace(limit));
    let r = decode();
    DECODE_LIMIT.with(|l| l.set(before));
    r
}

/// Whether a reservation of `layout` would be mapped lazily on this thread now.
pub fn would_be_lazy(layout: &Layout) -> bool {
    layout.align() <= PAGE_BYTES
        && (layout.size() >= LAZY_THRESHOLD_BYTES
            || layout.size() > DECODE_LIMIT.try_with(Cell::get).unwrap_or(usize::MAX))
}

/// Whether `ptr` (of `size` bytes) is a lazily mapped block: address space the
/// process is not charged for until touched. For allocation accounting in tests.
pub fn is_lazy_block(ptr: *mut u8, size: usize) -> bool {
    is_mapped(ptr, size).is_some()
}

/// Whether `ptr` is a lazily mapped block (only blocks this large can be).
fn is_mapped(ptr: *mut u8, size: usize) -> Option<&'static AtomicUsize> {
    if size < DECODE_FLOOR_BYTES {
        return None;
    }
    let addr = ptr as usize;
    LAZY.iter().find(|s| s.load(Ordering::Acquire) == addr)
}

/// The allocator; installed with `#[global_allocator]` in the binary.
#[derive(Debug, Default)]
pub struct LazyLargeAlloc;

#[cfg(unix)]
unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

/// Maps `size` bytes lazily and records the block; null if no slot is free or
/// the mapping failed (the caller then uses the system allocator).
unsafe fn map_recorded(size: usize) -> *mut u8 {
    let Some(slot) = LAZY.iter().find(|s| {
        s.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }) else {
        return std::ptr::null_mut();
    };
    // SAFETY: a fresh anonymous mapping.
    let p = unsafe { map(size) };
    slot.store(if p.is_null() { 0 } else { p as usize }, Ordering::Release);
    p
}

// SAFETY: every pointer is released by the mechanism that produced it: lazily
// mapped blocks are found in the `LAZY` table whatever the thread or scope, and
// everything else belongs to the system allocator.
unsafe impl GlobalAlloc for LazyLargeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if would_be_lazy(&layout) {
            let p = unsafe { map_recorded(layout.size()) };
            if !p.is_null() {
                return p;
            }
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if would_be_lazy(&layout) {
            // Anonymous mappings are zero-filled.
            let p = unsafe { map_recorded(layout.size()) };
            if !p.is_null() {
                return p;
            }
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match is_mapped(ptr, layout.size()) {
            Some(slot) => {
                // Forget the block first: once unmapped, its address may be reused.
                slot.store(0, Ordering::Release);
                // SAFETY: `ptr` came from `map` with this size.
                unsafe { libc::munmap(ptr.cast(), layout.size()) };
            }
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = match Layout::from_size_align(new_size, layout.align()) {
            Ok(l) => l,
            Err(_) => return std::ptr::null_mut(),
        };
        if is_mapped(ptr, layout.size()).is_none() && !would_be_lazy(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_reservation_is_lazy_and_usable() {
        let a = LazyLargeAlloc;
        let layout = Layout::from_size_align(64 << 30, 8).unwrap();
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            assert!(is_mapped(p, layout.size()).is_some());
            *p = 7;
            assert_eq!(*p, 7);
            let q = a.realloc(p, layout, 16);
            assert_eq!(*q, 7);
            assert!(
                is_mapped(p, layout.size()).is_none(),
                "the mapping was returned"
            );
            a.dealloc(q, Layout::from_size_align(16, 8).unwrap());
        }
    }

    #[test]
    fn reservations_a_frame_cannot_fill_are_lazy_only_while_decoding() {
        let layout = Layout::from_size_align(100 << 20, 8).unwrap();
        assert!(!would_be_lazy(&layout));
        let a = LazyLargeAlloc;
        let p = decoding(20, || {
            assert!(would_be_lazy(&layout));
            // A frame of 20 bytes may still hold small arrays.
            assert!(!would_be_lazy(
                &Layout::from_size_align(20 * 48, 8).unwrap()
            ));
            unsafe { a.alloc(layout) }
        });
        assert!(!would_be_lazy(&layout));
        // Freed outside the decode, still recognised as a mapping.
        assert!(is_mapped(p, layout.size()).is_some());
        unsafe { a.dealloc(p, layout) };
        assert!(is_mapped(p, layout.size()).is_none());
    }
}

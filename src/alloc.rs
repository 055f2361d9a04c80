//! A global allocator that makes very large reservations lazy.
//!
//! `kafka-protocol` (0.18) sizes a `Vec` from an array count read off the wire
//! before decoding any element, so a 20-byte request can ask for hundreds of GiB.
//! With the system allocator the reservation may be refused, and a refused
//! allocation aborts the process. This allocator serves reservations of
//! [`LAZY_THRESHOLD_BYTES`] and more with `mmap(MAP_NORESERVE)`: address space only,
//! no memory until touched. The decoder then fails on the missing bytes and the
//! reservation is returned, having cost nothing. Everything smaller goes to the
//! system allocator unchanged.

use std::alloc::{GlobalAlloc, Layout, System};

/// Reservations at least this large are mapped lazily. Far above any legitimate
/// allocation (requests are capped at `request_bytes_max`).
pub const LAZY_THRESHOLD_BYTES: usize = 1 << 30;

/// Page alignment that mmap guarantees.
const PAGE_BYTES: usize = 4096;

/// The allocator; installed with `#[global_allocator]` in the binary.
#[derive(Debug, Default)]
pub struct LazyLargeAlloc;

fn is_lazy(layout: &Layout) -> bool {
    layout.size() >= LAZY_THRESHOLD_BYTES && layout.align() <= PAGE_BYTES
}

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

// SAFETY: every pointer is released by the same mechanism that produced it: the
// decision depends only on the layout, which callers must pass unchanged.
unsafe impl GlobalAlloc for LazyLargeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_lazy(&layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_lazy(&layout) {
            // Anonymous mappings are zero-filled.
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_lazy(&layout) {
            // SAFETY: `ptr` came from `map` with this size.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = match Layout::from_size_align(new_size, layout.align()) {
            Ok(l) => l,
            Err(_) => return std::ptr::null_mut(),
        };
        if !is_lazy(&layout) && !is_lazy(&new_layout) {
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
            *p = 7;
            assert_eq!(*p, 7);
            let q = a.realloc(p, layout, 16);
            assert_eq!(*q, 7);
            a.dealloc(q, Layout::from_size_align(16, 8).unwrap());
        }
    }
}

//! The memory of the relays' read buffers: slots carved from 2 MiB arenas that ask the system
//! for transparent huge pages.
//!
//! A recording writes the bytes from the read buffers themselves with direct I/O, so the
//! kernel pins every page of them for each write and the relays read into them again and
//! again. With 4 KiB pages a stream of 1.2 GB/s pins 300,000 pages a second; with one 2 MiB
//! page per 15 buffers it pins a few hundred. Where the system gives no huge pages the slots
//! work the same on small ones.

use std::ptr::NonNull;
use std::sync::Arc;

/// Bytes of one arena: one huge page on x86-64 and aarch64 Linux.
pub const ARENA: usize = 2 << 20;

/// One arena of [`ARENA`] bytes, at an address aligned to its size: handed out as slots, and
/// given back to the system when the last of its slots is dropped.
struct Arena {
    base: NonNull<u8>,
}

// SAFETY: an arena is plain memory; each byte of it is reached only through the one `Slot` that
// owns the range it lies in (see `Slot`), so sharing the arena between threads shares no byte.
unsafe impl Send for Arena {}
// SAFETY: as for `Send`: `&Arena` gives access to no byte by itself.
unsafe impl Sync for Arena {}

impl Drop for Arena {
    fn drop(&mut self) {
        os::unmap(self.base);
    }
}

/// A range of `len` bytes in an arena, owned by whoever holds this value: the arena's other
/// slots are disjoint from it, and the arena lives as long as any of its slots.
pub struct Slot {
    arena: Arc<Arena>,
    start: usize,
    len: usize,
}

impl Slot {
    /// Maps a new arena and cuts it into as many slots of `len` bytes (a multiple of 4096, at
    /// most [`ARENA`]) as fit, each starting 4 KiB aligned. `None` when the system gives no
    /// memory.
    pub fn carve(len: usize) -> Option<Vec<Slot>> {
        if len == 0 || len > ARENA || len % 4096 != 0 {
            return None;
        }
        let arena = Arc::new(Arena { base: os::map()? });
        Some(
            (0..ARENA / len)
                .map(|i| Slot {
                    arena: Arc::clone(&arena),
                    start: i * len,
                    len,
                })
                .collect(),
        )
    }

    /// The arena the slot is cut from, to group slots by it.
    pub fn arena_id(&self) -> usize {
        self.arena.base.as_ptr() as usize
    }

    /// How many slots (free or in use) hold the slot's arena: when all of its slots are free
    /// and dropped, its memory goes back to the system.
    pub fn arena_slots_alive(&self) -> usize {
        Arc::strong_count(&self.arena)
    }
}

impl std::ops::Deref for Slot {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `start + len <= ARENA` (see `carve`), the arena is mapped while `self.arena`
        // lives, and no other slot covers these bytes; the memory was zeroed when mapped, so
        // every byte is initialised.
        unsafe { std::slice::from_raw_parts(self.arena.base.as_ptr().add(self.start), self.len) }
    }
}

impl std::ops::DerefMut for Slot {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` is the only way to these bytes while it lives.
        unsafe {
            std::slice::from_raw_parts_mut(self.arena.base.as_ptr().add(self.start), self.len)
        }
    }
}

#[cfg(target_os = "linux")]
mod os {
    use super::ARENA;
    use std::ptr::NonNull;

    /// Maps [`ARENA`] zeroed bytes aligned to their size, asking for a huge page: twice as
    /// much is mapped, and the ends beyond the aligned middle are unmapped again.
    pub(super) fn map() -> Option<NonNull<u8>> {
        // SAFETY: an anonymous private mapping at an address the kernel picks touches no
        // existing memory; the unmapped ends lie inside it and outside the range kept.
        unsafe {
            let raw = libc::mmap(
                std::ptr::null_mut(),
                2 * ARENA,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if raw == libc::MAP_FAILED {
                return None;
            }
            let start = raw as usize;
            let aligned = (start + ARENA - 1) & !(ARENA - 1);
            let head = aligned - start;
            if head > 0 {
                libc::munmap(raw, head);
            }
            let tail = ARENA - head;
            if tail > 0 {
                libc::munmap((aligned + ARENA) as *mut libc::c_void, tail);
            }
            // Advice only: without huge pages the arena works on small ones.
            libc::madvise(aligned as *mut libc::c_void, ARENA, libc::MADV_HUGEPAGE);
            NonNull::new(aligned as *mut u8)
        }
    }

    /// Unmaps an arena from [`map`].
    pub(super) fn unmap(base: NonNull<u8>) {
        // SAFETY: `base` is the start of an `ARENA`-byte mapping from `map`, unmapped once,
        // when its last slot is gone.
        unsafe {
            libc::munmap(base.as_ptr().cast(), ARENA);
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod os {
    use super::ARENA;
    use std::alloc::Layout;
    use std::ptr::NonNull;

    /// [`ARENA`] bytes aligned to their size (`None` cannot happen: it is a power of two).
    fn layout() -> Option<Layout> {
        Layout::from_size_align(ARENA, ARENA).ok()
    }

    /// Allocates [`ARENA`] zeroed bytes aligned to their size.
    pub(super) fn map() -> Option<NonNull<u8>> {
        let layout = layout()?;
        // SAFETY: the layout has a non-zero size.
        NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
    }

    /// Frees an arena from [`map`].
    pub(super) fn unmap(base: NonNull<u8>) {
        if let Some(layout) = layout() {
            // SAFETY: `base` came from `alloc_zeroed` with this layout and is freed once.
            unsafe { std::alloc::dealloc(base.as_ptr(), layout) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_disjoint_aligned_and_keep_their_arena_alive() {
        let len = 33 * 4096;
        let mut slots = Slot::carve(len).expect("memory for one arena");
        assert_eq!(slots.len(), ARENA / len);
        assert_eq!(
            slots[0].arena_id() % ARENA,
            0,
            "the arena is aligned to its size"
        );
        for (i, s) in slots.iter_mut().enumerate() {
            assert_eq!(s.len(), len);
            assert_eq!(s.as_ptr() as usize % 4096, 0);
            assert!(s.iter().all(|&b| b == 0), "zeroed when mapped");
            s.fill(u8::try_from(i).unwrap_or(0xFF));
        }
        for (i, s) in slots.iter().enumerate() {
            assert!(
                s.iter().all(|&b| b == u8::try_from(i).unwrap_or(0xFF)),
                "slot {i} was written by no other slot"
            );
        }
        let last = slots.pop().expect("slots");
        assert_eq!(last.arena_slots_alive(), ARENA / len);
        drop(slots);
        assert_eq!(last.arena_slots_alive(), 1);
        assert!(last.iter().all(|&b| usize::from(b) == ARENA / len - 1));
    }

    #[test]
    fn a_slot_size_that_does_not_fit_is_refused() {
        assert!(Slot::carve(0).is_none());
        assert!(Slot::carve(4097).is_none());
        assert!(Slot::carve(2 * ARENA).is_none());
    }
}

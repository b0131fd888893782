//! The only module with `unsafe` blocks: conversions between C pointers and Rust values.
//!
//! Modelled on rustls-ffi's `ffi.rs`: each opaque C type says, through [`Castable`], which Rust
//! type it stands for and whether C holds it as a `Box` (owned, mutable, one thread) or an `Arc`
//! (shared, read-only). Every helper treats NULL as "absent" (`None`), so the exported
//! functions turn it into `TOKENWARD_RESULT_NULL_PARAMETER` without touching the pointer.
//!
//! The exported functions are safe `extern "C" fn`s (the rustls-ffi convention): the contract
//! a C caller must keep (valid pointers, lengths that match, objects not yet freed, no
//! concurrent mutation of a Box) is stated in the header's doc comments, and the helpers here
//! rely on it.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::sync::Arc;

/// Marks how C holds a Rust value.
pub(crate) trait Castable {
    /// `OwnershipBox` or `OwnershipArc`.
    type Ownership;
    /// The Rust value behind the opaque C type.
    type RustType;
}

/// C holds a `Box`: created once, mutated by one thread, freed (or consumed) once.
pub(crate) struct OwnershipBox;
/// C holds one strong count of an `Arc`: read-only, any number of threads.
pub(crate) struct OwnershipArc;

/// Moves `value` to the heap and hands C the pointer.
pub(crate) fn box_into_ptr<C: Castable<Ownership = OwnershipBox>>(value: C::RustType) -> *mut C {
    Box::into_raw(Box::new(value)).cast()
}

/// Takes back a Box given out by [`box_into_ptr`]; NULL gives `None`.
pub(crate) fn box_from_ptr<C: Castable<Ownership = OwnershipBox>>(
    ptr: *mut C,
) -> Option<Box<C::RustType>> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-NULL pointers of this type only come from `box_into_ptr::<C>` (the header's
    // contract), which made them with `Box::into_raw` of a `C::RustType`; C passes each to a
    // consuming function at most once, so the Box is reclaimed exactly once.
    Some(unsafe { Box::from_raw(ptr.cast::<C::RustType>()) })
}

/// Borrows the value behind a Box pointer mutably; NULL gives `None`.
pub(crate) fn box_mut<'a, C: Castable<Ownership = OwnershipBox>>(
    ptr: *mut C,
) -> Option<&'a mut C::RustType> {
    // SAFETY: a non-NULL pointer came from `box_into_ptr::<C>` and is not freed yet; the header
    // forbids using a Box-backed object from two threads at once, so this borrow is unique for
    // the duration of the call that made it.
    unsafe { ptr.cast::<C::RustType>().as_mut() }
}

/// Gives C one strong count of `value`.
pub(crate) fn arc_into_ptr<C: Castable<Ownership = OwnershipArc>>(
    value: Arc<C::RustType>,
) -> *const C {
    Arc::into_raw(value).cast()
}

/// Drops the strong count C holds; NULL does nothing.
pub(crate) fn arc_free<C: Castable<Ownership = OwnershipArc>>(ptr: *const C) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: the pointer came from `arc_into_ptr::<C>` (`Arc::into_raw` of `C::RustType`), and
    // C frees each handle once, after every call using it has returned.
    drop(unsafe { Arc::from_raw(ptr.cast::<C::RustType>()) });
}

/// Borrows the value behind any handle (Box or Arc) read-only; NULL gives `None`.
pub(crate) fn try_ref<'a, C: Castable>(ptr: *const C) -> Option<&'a C::RustType> {
    // SAFETY: a non-NULL pointer came from `box_into_ptr::<C>` or `arc_into_ptr::<C>` and stays
    // valid until C frees it, which the header forbids while a call using it runs. Shared
    // reads are sound: Arc-backed types are `Sync`, Box-backed ones are not shared by C.
    unsafe { ptr.cast::<C::RustType>().as_ref() }
}

/// Borrows `len` bytes at `data`. NULL with `len == 0` is the empty slice; NULL with a
/// length gives `None`.
pub(crate) fn try_bytes<'a>(data: *const u8, len: usize) -> Option<&'a [u8]> {
    try_slice(data, len)
}

/// Borrows an array of `len` values at `data`, with the same NULL rule as [`try_bytes`].
pub(crate) fn try_slice<'a, T>(data: *const T, len: usize) -> Option<&'a [T]> {
    if data.is_null() {
        return if len == 0 { Some(&[]) } else { None };
    }
    if len == 0 {
        return Some(&[]);
    }
    // SAFETY: the caller promises (header contract) that `data` points to `len` initialised
    // values that stay unchanged for the duration of the call; the pointer is non-NULL.
    Some(unsafe { std::slice::from_raw_parts(data, len) })
}

/// Writes an out-param. `false` when `out` is NULL (nothing written).
pub(crate) fn write_out<T>(out: *mut T, value: T) -> bool {
    if out.is_null() {
        return false;
    }
    // SAFETY: `out` is non-NULL and, by the header contract, points to writable storage for a
    // `T`; `write` does not read or drop the old (possibly uninitialised) contents.
    unsafe { out.write(value) };
    true
}

/// Writes `values` to the first `values.len()` elements of the array at `out`; nothing when
/// `values` is empty. The caller has checked that `out` is non-NULL when `values` is not
/// empty and that the array has room for them.
pub(crate) fn write_slice<T: Copy>(out: *mut T, values: &[T]) {
    if out.is_null() || values.is_empty() {
        return;
    }
    // SAFETY: `out` is non-NULL and, by the header contract and the caller's length check,
    // points to at least `values.len()` writable `T`s that do not overlap Rust's data.
    unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), out, values.len()) };
}

/// Reads the `size_t struct_size` that a caller-sized struct starts with; NULL gives `None`.
///
/// Only for `#[repr(C)]` structs whose first field is a `usize` (`size_t`) the caller sets.
pub(crate) fn read_struct_size<T>(ptr: *const T) -> Option<usize> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: `ptr` is non-NULL and points to a caller's struct (header contract) whose first
    // field, at offset 0 of a #[repr(C)] layout, is an initialised `size_t`; the caller's
    // struct is at least that large whatever version of the header it was built with.
    Some(unsafe { ptr.cast::<usize>().read_unaligned() })
}

/// The caller's size-prefixed `#[repr(C)]` struct at `ptr` (its first field a `size_t`
/// giving its size), read as far as that size and this library's version of `T` both reach,
/// in whole machine words; the fields past it keep their value in `value`. `None` for NULL.
///
/// Only for structs made of pointers and `size_t`s, so any word the caller wrote is a valid
/// value and no field is read in part.
pub(crate) fn read_struct_within<T: Copy>(ptr: *const T, mut value: T) -> Option<T> {
    let size = read_struct_size(ptr)?;
    let word = std::mem::size_of::<usize>();
    let n = size.min(std::mem::size_of::<T>()) / word * word;
    // SAFETY: `ptr` is non-NULL and points to the caller's struct of `size` initialised bytes
    // (header contract); we copy `n <= size` bytes into our own `value`, which is at least
    // `n` bytes long; the two never overlap. `T` holds only pointers and `usize`s, copied
    // whole, so the result is a valid `T`.
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&raw mut value).cast::<u8>(), n);
    }
    Some(value)
}

/// Writes as many of `values` as fit, as consecutive `u64`s starting `offset` bytes into the
/// caller's struct at `out`, which is `struct_size` bytes long by the caller's word. Never
/// writes past `struct_size` nor past `size_of::<T>()`; returns how many values it wrote.
///
/// Only for `#[repr(C)]` structs whose fields from `offset` on are all `u64`.
pub(crate) fn write_u64s_within<T>(
    out: *mut T,
    struct_size: usize,
    offset: usize,
    values: &[u64],
) -> usize {
    let limit = struct_size.min(std::mem::size_of::<T>());
    let room = limit.saturating_sub(offset) / std::mem::size_of::<u64>();
    let n = room.min(values.len());
    if out.is_null() {
        return 0;
    }
    // One byte copy of the whole prefix (a memcpy that AddressSanitizer and valgrind see).
    let bytes: Vec<u8> = values[..n].iter().flat_map(|v| v.to_ne_bytes()).collect();
    // SAFETY: `out` is non-NULL and points to `struct_size` writable bytes (the caller states
    // that size; header contract); the byte range `offset .. offset + 8 * n` lies within
    // `limit <= struct_size` because `n <= (limit - offset) / 8`. A byte copy needs no
    // alignment, and Rust's buffer never overlaps the caller's struct.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.cast::<u8>().add(offset), bytes.len())
    };
    n
}

/// Copies `bytes` plus a NUL into `buf` of `len` bytes. `false` (nothing written) when the
/// bytes and the NUL do not fit or `buf` is NULL.
pub(crate) fn copy_with_nul(buf: *mut u8, len: usize, bytes: &[u8]) -> bool {
    if buf.is_null() || bytes.len() >= len {
        return false;
    }
    // SAFETY: `buf` is non-NULL and points to `len` writable bytes (header contract); we write
    // `bytes.len() + 1 <= len` bytes. Rust data never overlaps a caller's output buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, bytes.len());
        buf.add(bytes.len()).write(0);
    }
    true
}

/// Copies as much of `bytes` as fits in `buf` (leaving room for a NUL) and terminates it,
/// like `snprintf`. Does nothing when `buf` is NULL or `len` is 0.
pub(crate) fn copy_truncated(buf: *mut u8, len: usize, bytes: &[u8]) {
    if len == 0 {
        return;
    }
    let n = bytes.len().min(len - 1);
    copy_with_nul(buf, len, &bytes[..n]);
}

/// The C caller's `userdata` pointer, carried to log callbacks on any thread.
#[derive(Clone, Copy)]
pub(crate) struct UserData(pub(crate) *mut c_void);

// SAFETY: tokenward never dereferences `userdata`; it only hands it back to the caller's
// callback. The header requires that whatever it points to may be used from any thread
// (the callback runs on every thread that calls `tokenward_authenticate`).
unsafe impl Send for UserData {}
// SAFETY: as above: shared access only copies the pointer value.
unsafe impl Sync for UserData {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_rules() {
        assert_eq!(try_bytes(std::ptr::null(), 0), Some(&[][..]));
        assert_eq!(try_bytes(std::ptr::null(), 3), None);
        let data = *b"abc";
        assert_eq!(try_bytes(data.as_ptr(), 2), Some(&b"ab"[..]));
        assert!(!write_out::<u32>(std::ptr::null_mut(), 1));
        let mut x = 0u32;
        assert!(write_out(&mut x, 7));
        assert_eq!(x, 7);
    }

    #[repr(C)]
    #[derive(Debug, PartialEq)]
    struct Sized3 {
        struct_size: usize,
        a: u64,
        b: u64,
        c: u64,
    }

    #[test]
    fn caller_sized_struct_is_written_only_within_its_size() {
        let offset = std::mem::offset_of!(Sized3, a);
        let fresh = |size| Sized3 {
            struct_size: size,
            a: 0xaa,
            b: 0xbb,
            c: 0xcc,
        };
        // An older caller whose struct ends after `a`: `b` and `c` stand for its neighbours.
        let mut s = fresh(offset + 8);
        assert_eq!(read_struct_size(&s), Some(offset + 8));
        assert_eq!(
            write_u64s_within(&mut s, s.struct_size, offset, &[1, 2, 3]),
            1
        );
        assert_eq!(
            s,
            Sized3 {
                a: 1,
                ..fresh(offset + 8)
            }
        );
        // A size that cuts a field in two writes only the whole fields before it.
        let mut s = fresh(offset + 8 + 7);
        assert_eq!(
            write_u64s_within(&mut s, s.struct_size, offset, &[1, 2, 3]),
            1
        );
        assert_eq!(s.b, 0xbb);
        // A newer, larger caller struct: never written past what this side knows.
        let mut s = fresh(4096);
        assert_eq!(
            write_u64s_within(&mut s, s.struct_size, offset, &[1, 2, 3, 4, 5]),
            3
        );
        assert_eq!((s.a, s.b, s.c), (1, 2, 3));
        // Too small for any field; NULL.
        let mut s = fresh(offset);
        assert_eq!(write_u64s_within(&mut s, s.struct_size, offset, &[1]), 0);
        assert_eq!(s, fresh(offset));
        assert_eq!(
            write_u64s_within::<Sized3>(std::ptr::null_mut(), 64, offset, &[1]),
            0
        );
        assert_eq!(read_struct_size::<Sized3>(std::ptr::null()), None);
    }

    #[test]
    fn copies() {
        let mut buf = [0xffu8; 4];
        assert!(!copy_with_nul(buf.as_mut_ptr(), buf.len(), b"abcd"));
        assert_eq!(buf, [0xff; 4], "nothing written when it does not fit");
        assert!(copy_with_nul(buf.as_mut_ptr(), buf.len(), b"abc"));
        assert_eq!(&buf, b"abc\0");
        copy_truncated(buf.as_mut_ptr(), buf.len(), b"wxyz!");
        assert_eq!(&buf, b"wxy\0");
        copy_truncated(std::ptr::null_mut(), 0, b"x");
    }
}

//! How a plugin process with a memory limit names its own death by that limit, so the
//! host need not guess from stderr.
//!
//! Under `RLIMIT_AS` an allocation fails: `malloc` returns null with `errno = ENOMEM`.
//! Two kinds of code allocate in the plugin process, and each is covered:
//!
//! - the host's own code (the wire frames, JSON): [`ExitOnLimit`], the `tributary`
//!   binary's global allocator, exits at once with [`EXIT_OUT_OF_MEMORY`];
//! - the plugin: a cdylib has its own copy of Rust's standard library and so its own
//!   global allocator, which no wrapper here can reach. On a failed allocation Rust
//!   prints `memory allocation of N bytes failed` and calls `abort()`. A `SIGABRT`
//!   handler sees the aborting thread's `errno`, still `ENOMEM` from the failed `malloc`
//!   (the print and `abort` itself make no failing call), and exits with
//!   [`EXIT_OUT_OF_MEMORY`] instead; any other abort goes on to kill the process with
//!   `SIGABRT` as before.
//!
//! Both are armed only in a plugin process that has a memory limit: in the host, and in
//! a plugin process without a limit, nothing changes. The allocator's cost is one
//! comparison with null on each allocation, on a path that already calls `malloc`.
//!
//! The parent keeps its stderr match (`memory allocation of`) as a fallback for what this
//! cannot see (a plugin that handles the null itself and then dies some other way).

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit code of a plugin process stopped by its memory limit.
pub const EXIT_OUT_OF_MEMORY: i32 = 87;

/// The line written to stderr before exiting with [`EXIT_OUT_OF_MEMORY`].
pub const OUT_OF_MEMORY_LINE: &str =
    "plugin-host: an allocation failed under the memory limit (RLIMIT_AS); exiting\n";

/// Set once this process is a plugin process with a memory limit.
static ARMED: AtomicBool = AtomicBool::new(false);

/// The system allocator, which in a memory-limited plugin process exits with
/// [`EXIT_OUT_OF_MEMORY`] instead of returning null. Install it with
/// `#[global_allocator]` in the binary.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExitOnLimit;

// SAFETY: every method forwards to `System` with the caller's arguments and returns its
// result unchanged; only a null result may end the process instead.
unsafe impl GlobalAlloc for ExitOnLimit {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System`'s.
        checked(unsafe { System.alloc(layout) })
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        checked(unsafe { System.alloc_zeroed(layout) })
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        checked(unsafe { System.realloc(ptr, layout, new_size) })
    }
}

#[inline(always)]
fn checked(ptr: *mut u8) -> *mut u8 {
    if ptr.is_null() && ARMED.load(Ordering::Relaxed) {
        exit_out_of_memory();
    }
    ptr
}

/// Writes [`OUT_OF_MEMORY_LINE`] and exits with [`EXIT_OUT_OF_MEMORY`]: nothing that
/// allocates, and async-signal-safe (it runs in a signal handler too).
fn exit_out_of_memory() -> ! {
    // SAFETY: `write` and `_exit` are async-signal-safe and take no Rust invariants; the
    // buffer is a static string.
    unsafe {
        libc::write(
            libc::STDERR_FILENO,
            OUT_OF_MEMORY_LINE.as_ptr().cast(),
            OUT_OF_MEMORY_LINE.len(),
        );
        libc::_exit(EXIT_OUT_OF_MEMORY)
    }
}

extern "C" fn on_abort(_signal: libc::c_int) {
    if nix::errno::Errno::last() == nix::errno::Errno::ENOMEM {
        exit_out_of_memory();
    }
    // Returning lets `abort()` restore the default action and kill the process with
    // SIGABRT, as without this handler.
}

/// Arms both mechanisms; call once the plugin process has set its memory limit.
pub fn arm() -> Result<(), String> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    ARMED.store(true, Ordering::Relaxed);
    let action = SigAction::new(
        SigHandler::Handler(on_abort),
        SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    // SAFETY: the handler does only async-signal-safe work (read errno, write, _exit).
    unsafe { sigaction(Signal::SIGABRT, &action) }
        .map(drop)
        .map_err(|e| format!("cannot install the out-of-memory handler: {e}"))
}

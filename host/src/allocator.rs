//! The allocator every program built on the host uses: mimalloc, declared
//! here so the `handoff` binary, the tests and the benchmarks allocate the
//! same way and a memory bound a test measures is the one that ships.
//!
//! glibc's malloc and free were about a tenth of the plugin pool's samples;
//! with mimalloc, tuned as below, a burst hands off about a fifth more leads
//! a second, at 3-4% less CPU a lead when paced and peak RSS still under
//! 150 MiB (BENCHMARKS.md, tenth pass).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's purge delay (ms), by its number in `mi_option_e` (mimalloc.h
/// of the v3 sources libmimalloc-sys builds; the crate names only some
/// options), and the value [`tune`] sets: freed memory goes back to the
/// kernel at once rather than after a second. The other setting that keeps
/// RSS down, arenas committed as they are used, is built in
/// (`.cargo/config.toml`). With mimalloc's defaults peak RSS at 100 leads/s
/// was 199-213 MiB against 128-139 with glibc; with both, 138-139 MiB.
const PURGE_DELAY: (i32, std::ffi::c_long) = (15, 0);

/// Sets [`PURGE_DELAY`] unless the operator set `MIMALLOC_PURGE_DELAY`
/// (mimalloc reads its options from the environment when the process
/// starts). Call it first thing, before other threads allocate.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set stores one integer option.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY.0, PURGE_DELAY.1) }
    }
}

#[cfg(test)]
mod tests {
    /// mimalloc's `mi_option_arena_eager_commit`, by its number.
    const ARENA_EAGER_COMMIT: i32 = 4;

    #[test]
    fn the_allocator_options_set_are_the_ones_named() {
        // Each number must name its option in the mimalloc this links: read
        // before anything sets them, they hold the defaults this build
        // gives them: eager commit 0 from `.cargo/config.toml` (mimalloc's
        // own is 2), the purge delay mimalloc's 1,000 ms (options.c). A
        // libmimalloc-sys that renumbers them, or a build without the
        // define, fails here. Nothing in the library's unit tests calls
        // `tune`.
        // SAFETY: mi_option_get reads one integer option.
        let read = |option| unsafe { libmimalloc_sys::mi_option_get(option) };
        assert_eq!(read(ARENA_EAGER_COMMIT), 0, "arenas committed as used (MI_DEFAULT_ARENA_EAGER_COMMIT=0)");
        assert_eq!(read(super::PURGE_DELAY.0), 1000, "mimalloc's purge delay");
    }
}

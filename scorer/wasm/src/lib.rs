//! `scorer.wasm`: the raw ABI over [`scorer`] for wasmtime and any other embedder.
//!
//! For now it exports `tg_version`; the scorer-wasm issue adds `tg_alloc`, `tg_free`,
//! `tg_load_snapshot`, `tg_score` and `tg_score_batch` (contract in `docs/abi.md`).
#![cfg_attr(target_arch = "wasm32", no_std)]

/// The ABI version, major in the high 16 bits and minor in the low 16 bits.
pub const ABI_VERSION: u32 = 0x0000_0001;

/// Returns [`ABI_VERSION`], so an embedder can refuse a module it does not speak.
#[unsafe(no_mangle)]
pub extern "C" fn tg_version() -> u32 {
    ABI_VERSION
}

#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // No panic may cross the wasm boundary as anything but a trap the host survives.
    core::arch::wasm32::unreachable()
}

//! What `scorer.wasm` imports from its host (`docs/abi.md`, "Imports"): ed25519 verification and
//! BLAKE3 for the snapshot checks, computed natively with the same crates the `scorer` crate
//! uses (`scorer::snapshot::crypto`), so the results are those of native code.
//!
//! Every pointer and length the guest passes is checked against its memory: a bad one traps the
//! guest (the call fails, the instance is discarded), it never reaches the host's memory.

use scorer::snapshot::crypto;
use wasmtime::{Caller, Linker, Memory};

/// The import module name.
pub const IMPORT_MODULE: &str = "tollgate";

/// Adds the module's imports (`tollgate.tg_ed25519_verify`, `tollgate.tg_blake3`) to `linker`.
/// Any store data type will do: the imports only read and write the guest's memory.
pub fn add_imports<T: 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        "tg_ed25519_verify",
        |mut caller: Caller<'_, T>, message: u32, message_len: u32, signature: u32, key: u32| {
            let memory = memory(&mut caller)?;
            let data = memory.data(&caller);
            let message = range(data, message, message_len, "tg_ed25519_verify message")?;
            let signature: &[u8; 64] = fixed(data, signature, "tg_ed25519_verify signature")?;
            let key: &[u8; 32] = fixed(data, key, "tg_ed25519_verify key")?;
            Ok(crypto::ed25519_verify(key, message, signature) as u32)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "tg_blake3",
        |mut caller: Caller<'_, T>, bytes: u32, len: u32, out: u32| {
            let memory = memory(&mut caller)?;
            let digest = crypto::blake3(range(memory.data(&caller), bytes, len, "tg_blake3 input")?);
            let out: &mut [u8; 32] = fixed_mut(memory.data_mut(&mut caller), out, "tg_blake3 output")?;
            *out = digest;
            Ok(())
        },
    )?;
    Ok(())
}

fn memory<T>(caller: &mut Caller<'_, T>) -> wasmtime::Result<Memory> {
    caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or_else(|| wasmtime::Error::msg("the guest exports no memory"))
}

/// The `len` bytes at `ptr` in the guest's memory `data`, or an error (a trap) naming `what`.
fn range<'d>(data: &'d [u8], ptr: u32, len: u32, what: &str) -> wasmtime::Result<&'d [u8]> {
    let start = ptr as usize;
    start
        .checked_add(len as usize)
        .and_then(|end| data.get(start..end))
        .ok_or_else(|| outside(what, ptr, len, data.len()))
}

fn fixed<'d, const N: usize>(data: &'d [u8], ptr: u32, what: &str) -> wasmtime::Result<&'d [u8; N]> {
    let bytes = range(data, ptr, N as u32, what)?;
    bytes.try_into().map_err(|_| outside(what, ptr, N as u32, data.len()))
}

fn fixed_mut<'d, const N: usize>(
    data: &'d mut [u8],
    ptr: u32,
    what: &str,
) -> wasmtime::Result<&'d mut [u8; N]> {
    let size = data.len();
    let start = ptr as usize;
    start
        .checked_add(N)
        .and_then(|end| data.get_mut(start..end))
        .and_then(|b| <&mut [u8; N]>::try_from(b).ok())
        .ok_or_else(|| outside(what, ptr, N as u32, size))
}

fn outside(what: &str, ptr: u32, len: u32, size: usize) -> wasmtime::Error {
    wasmtime::Error::msg(format!(
        "{what}: {len} bytes at offset {ptr} lie outside the guest's {size}-byte memory"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_inside_memory_are_given_and_others_refused() {
        let data = [1u8, 2, 3, 4];
        assert_eq!(range(&data, 1, 3, "x").unwrap(), &[2, 3, 4]);
        assert_eq!(range(&data, 4, 0, "x").unwrap(), &[] as &[u8]);
        assert!(range(&data, 2, 3, "x").is_err());
        assert!(range(&data, u32::MAX, u32::MAX, "x").is_err());
        let message = range(&data, 5, 0, "the input").unwrap_err().to_string();
        assert_eq!(message, "the input: 0 bytes at offset 5 lie outside the guest's 4-byte memory");
        assert!(fixed::<4>(&data, 0, "x").is_ok());
        assert!(fixed::<4>(&data, 1, "x").is_err());
        let mut data = data;
        assert!(fixed_mut::<2>(&mut data, 3, "x").is_err());
        *fixed_mut::<2>(&mut data, 2, "x").unwrap() = [9, 9];
        assert_eq!(data, [1, 2, 9, 9]);
    }
}

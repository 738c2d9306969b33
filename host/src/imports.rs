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
    use wasmtime::{Engine, Module, Store};

    /// A guest that calls the imports with the pointers it is given: one page of memory, "abc"
    /// at 0, a signature at 64 and a key at 128 written by the test.
    const GUEST: &str = r#"
        (module
          (import "tollgate" "tg_ed25519_verify" (func $verify (param i32 i32 i32 i32) (result i32)))
          (import "tollgate" "tg_blake3" (func $blake3 (param i32 i32 i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "abc")
          (func (export "verify") (param i32 i32 i32 i32) (result i32)
            (call $verify (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
          (func (export "blake3") (param i32 i32 i32)
            (call $blake3 (local.get 0) (local.get 1) (local.get 2))))
    "#;

    #[test]
    fn a_guest_gets_native_results_and_traps_on_pointers_outside_its_memory() -> wasmtime::Result<()> {
        let engine = Engine::default();
        let module = Module::new(&engine, wat::parse_str(GUEST)?)?;
        let mut linker = Linker::new(&engine);
        add_imports(&mut linker)?;
        let mut store = Store::new(&engine, ());
        let instance = linker.instantiate(&mut store, &module)?;
        let memory =
            instance.get_memory(&mut store, "memory").ok_or_else(|| wasmtime::Error::msg("memory"))?;
        let blake3 = instance.get_typed_func::<(u32, u32, u32), ()>(&mut store, "blake3")?;
        let verify = instance.get_typed_func::<(u32, u32, u32, u32), u32>(&mut store, "verify")?;

        blake3.call(&mut store, (0, 3, 1000))?;
        assert_eq!(&memory.data(&store)[1000..1032], &crypto::blake3(b"abc"));
        let signer =
            scorer::snapshot::SnapshotSigner::from_secret([7; 32], scorer::snapshot::IdHashKey([1; 16]));
        let key = &signer.edge_key().to_text();
        let key_hex = key.split("verify-key = ").nth(1).map(|rest| &rest[..64]).unwrap_or_default();
        let key_bytes: Vec<u8> =
            (0..32).map(|i| u8::from_str_radix(&key_hex[2 * i..2 * i + 2], 16).unwrap_or_default()).collect();
        memory.write(&mut store, 64, &signer.sign(b"abc"))?;
        memory.write(&mut store, 128, &key_bytes)?;
        assert_eq!(verify.call(&mut store, (0, 3, 64, 128))?, 0, "a good signature");
        assert_eq!(verify.call(&mut store, (0, 2, 64, 128))?, 1, "another message");

        // Outside the 64 KiB page: each call traps, the host stays up and the memory unchanged.
        let page = 65_536u32;
        let before = memory.data(&store).to_vec();
        for (args, what) in
            [((0, page + 1, 1000), "input"), ((0, 3, page - 31), "output"), ((u32::MAX, 2, 0), "wrap")]
        {
            let err = blake3.call(&mut store, args).expect_err(what);
            assert!(format!("{err:?}").contains("outside the guest's 65536-byte memory"), "{what}: {err:?}");
        }
        for args in
            [(0, page + 1, 64, 128), (0, 3, page - 63, 128), (0, 3, 64, page - 31), (u32::MAX, 1, 64, 128)]
        {
            assert!(verify.call(&mut store, args).is_err(), "{args:?} did not trap");
        }
        assert!(memory.data(&store) == before.as_slice(), "a trapping call wrote memory");
        Ok(())
    }

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

//! Compiled modules cached on disk: Cranelift runs once per module and engine, later starts
//! deserialize the native code (`Module::serialize` / `Module::deserialize_file`).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::{Engine, Module};

/// Where a module came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleSource {
    /// Compiled with Cranelift now (and written to the cache when there is one).
    Compiled,
    /// Read back from the on-disk cache.
    Cached,
}

/// A hex text of the blake3 hash of the module's bytes: the module's identity.
pub fn module_hash(wasm: &[u8]) -> String {
    blake3::hash(wasm).to_hex().to_string()
}

/// The engine's compatibility key: modules compiled by an engine with another key cannot load.
fn engine_key(engine: &Engine) -> u64 {
    // DefaultHasher::new() has fixed keys, so the key is stable from one run to the next.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    h.finish()
}

/// The cache file of `wasm` for `engine` in `dir`.
pub fn cache_path(dir: &Path, engine: &Engine, wasm: &[u8]) -> PathBuf {
    dir.join(format!("scorer-{}-{:016x}.cwasm", &module_hash(wasm)[..32], engine_key(engine)))
}

/// Compiles `wasm`, or deserializes it from `dir` when a cache file for this module and engine is
/// there. A cache file that fails to load is replaced; a cache that cannot be written is only a
/// slower next start, so write errors are ignored.
pub fn load_module(
    engine: &Engine,
    wasm: &[u8],
    dir: Option<&Path>,
) -> wasmtime::Result<(Module, ModuleSource)> {
    let Some(dir) = dir else { return Ok((Module::new(engine, wasm)?, ModuleSource::Compiled)) };
    let path = cache_path(dir, engine, wasm);
    if path.is_file() {
        // SAFETY: the file is one this host wrote (`Module::serialize` output for this very module
        // and engine, named by their hashes) into a cache directory that only the host writes.
        // wasmtime checks the header and engine compatibility and refuses a mismatch.
        if let Ok(module) = unsafe { Module::deserialize_file(engine, &path) } {
            return Ok((module, ModuleSource::Cached));
        }
    }
    let module = Module::new(engine, wasm)?;
    if let Ok(bytes) = module.serialize() {
        let _ = std::fs::create_dir_all(dir);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, &bytes).is_ok() && std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok((module, ModuleSource::Compiled))
}

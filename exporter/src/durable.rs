//! Replacing a file so that a crash leaves either the old or the new one, never a part: the one
//! way every tollgate tool writes a file that others read while it runs (snapshots pushed to a
//! directory, checkpoints, shards, the model registry).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Replaces the file at `path` with `bytes`, atomically and durably: written to a temporary file
/// beside it (a dot name, which readers that list the directory skip), synced, renamed over
/// `path`, and the directory synced so that the rename survives a crash. The directory must
/// exist; the temporary file is removed when a step fails.
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let tmp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    let write = || -> io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        if cfg!(unix) { File::open(dir)?.sync_all() } else { Ok(()) }
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.bin");
        replace_file(&path, b"first").expect("write");
        replace_file(&path, b"second").expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, ["a.bin"]);
        let missing = dir.path().join("no/such/dir/a.bin");
        assert_eq!(replace_file(&missing, b"x").expect_err("no dir").kind(), io::ErrorKind::NotFound);
    }
}

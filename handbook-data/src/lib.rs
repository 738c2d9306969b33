//! Where the handbook data set lives (`../shared/data/handbook/` beside the repository), and what
//! a test does when it is absent. For tests and benches only.

use std::path::PathBuf;

/// Set to `1` to let the tests that need the handbook pass (saying they skipped) without it.
pub const SKIP_VARIABLE: &str = "TOLLGATE_SKIP_HANDBOOK";

/// The transactions file (1,754,155 rows).
pub const TRANSACTIONS: &str = "handbook_transactions.csv.gz";

/// The handbook's folder, `../shared/data/handbook` beside the repository.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/handbook")
}

/// The handbook file `name` (present or not).
pub fn file(name: &str) -> PathBuf {
    dir().join(name)
}

/// The handbook file `name` for a test: its path when present; `Ok(None)` when it is absent and
/// [`SKIP_VARIABLE`] is `1` (after printing that the test skipped); otherwise an error that names
/// the file and the variable.
pub fn for_test(name: &str) -> Result<Option<PathBuf>, String> {
    let path = file(name);
    if path.exists() {
        return Ok(Some(path));
    }
    if std::env::var(SKIP_VARIABLE).as_deref() == Ok("1") {
        println!("skipped: {} is absent and {SKIP_VARIABLE}=1", path.display());
        return Ok(None);
    }
    Err(format!(
        "{} is absent: put ../shared beside the repository (see its data/handbook/README.md), or set \
         {SKIP_VARIABLE}=1 to skip the tests that need it",
        path.display()
    ))
}

/// [`for_test`] for a test function: panics with its error.
pub fn required(name: &str) -> Option<PathBuf> {
    for_test(name).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_file_is_an_error_naming_it_and_the_variable() {
        // A name no handbook has: absent whether ../shared is there or not.
        let name = "no_such_handbook_file.csv";
        match std::env::var(SKIP_VARIABLE).as_deref() {
            Ok("1") => assert_eq!(for_test(name), Ok(None)),
            _ => {
                let e = for_test(name).unwrap_err();
                assert!(e.contains(name) && e.contains(SKIP_VARIABLE), "{e}");
            }
        }
    }

    #[test]
    fn files_lie_in_the_shared_folder_beside_the_repository() {
        let path = file(TRANSACTIONS);
        assert!(path.ends_with("shared/data/handbook/handbook_transactions.csv.gz"), "{}", path.display());
    }
}

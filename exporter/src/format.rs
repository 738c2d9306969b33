//! Which file format a path names, by its extension: one rule for every reader and writer.

use std::path::Path;

/// A tabular file format the exporter reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// Comma-separated values with a header line (`.csv`).
    Csv,
    /// Gzip-compressed CSV (`.csv.gz`).
    CsvGz,
    /// Apache Parquet (`.parquet`).
    Parquet,
}

/// The path's extension names no format the exporter knows.
#[derive(Debug, thiserror::Error)]
#[error("{path}: unknown file type; use a name ending in .csv, .csv.gz or .parquet")]
pub struct UnknownFormat {
    /// The path as given.
    pub path: String,
}

impl FileFormat {
    /// The format named by `path`'s extension (case-insensitive).
    pub fn from_path(path: &Path) -> Result<FileFormat, UnknownFormat> {
        let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        if name.ends_with(".csv.gz") {
            Ok(FileFormat::CsvGz)
        } else if name.ends_with(".csv") {
            Ok(FileFormat::Csv)
        } else if name.ends_with(".parquet") {
            Ok(FileFormat::Parquet)
        } else {
            Err(UnknownFormat { path: path.display().to_string() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_formats_by_extension() {
        assert_eq!(FileFormat::from_path(Path::new("a/b.CSV")).unwrap(), FileFormat::Csv);
        assert_eq!(FileFormat::from_path(Path::new("x.csv.gz")).unwrap(), FileFormat::CsvGz);
        assert_eq!(FileFormat::from_path(Path::new("x.parquet")).unwrap(), FileFormat::Parquet);
        let err = FileFormat::from_path(Path::new("x.txt")).unwrap_err();
        assert!(err.to_string().contains("x.txt: unknown file type"));
    }
}

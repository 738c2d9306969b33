//! Where rejected rows go: under [`OnError::Fail`] the first one becomes the error, under
//! [`OnError::Quarantine`] each is written to a CSV file (`line` or `row`, `reason`, then the
//! row's fields) and counted.

use super::{BadRow, IngestError, OnError, Place, RowProblem};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// Receives the rejected rows of one file.
pub(super) struct Rejections {
    input: PathBuf,
    writer: Option<(csv::Writer<BufWriter<File>>, PathBuf)>,
    /// Rows rejected so far.
    pub count: u64,
}

impl Rejections {
    /// Opens the quarantine file when asked for, with `place_column` ("line" or "row"), `reason`
    /// and `header` as its header.
    pub fn open<'h>(
        input: &Path,
        on_error: &OnError,
        place_column: &str,
        header: impl IntoIterator<Item = &'h [u8]>,
    ) -> Result<Rejections, IngestError> {
        let writer = match on_error {
            OnError::Fail => None,
            OnError::Quarantine(path) => {
                let fail = |source| IngestError::Quarantine { path: path.clone(), source };
                let file = File::create(path).map_err(fail)?;
                let mut w = csv::WriterBuilder::new().flexible(true).from_writer(BufWriter::new(file));
                let written = write_row(&mut w, place_column.as_bytes(), b"reason", header);
                written.map_err(|e| fail(e.into()))?;
                Some((w, path.clone()))
            }
        };
        Ok(Rejections { input: input.to_path_buf(), writer, count: 0 })
    }

    /// Rejects one row: the error under [`OnError::Fail`], else a quarantine line.
    pub fn reject<'f>(
        &mut self,
        place: Place,
        problem: RowProblem,
        fields: impl IntoIterator<Item = &'f [u8]>,
    ) -> Result<(), IngestError> {
        let Some((w, path)) = &mut self.writer else {
            return Err(IngestError::BadRow(Box::new(BadRow { path: self.input.clone(), place, problem })));
        };
        self.count += 1;
        let number = match place {
            Place::Line(n) | Place::Row(n) => n.to_string(),
        };
        let reason = problem.to_string();
        write_row(w, number.as_bytes(), reason.as_bytes(), fields)
            .map_err(|e| IngestError::Quarantine { path: path.clone(), source: e.into() })
    }

    /// Flushes the quarantine file; returns its path when there is one.
    pub fn finish(self) -> Result<Option<PathBuf>, IngestError> {
        match self.writer {
            None => Ok(None),
            Some((mut w, path)) => match w.flush() {
                Ok(()) => Ok(Some(path)),
                Err(source) => Err(IngestError::Quarantine { path, source }),
            },
        }
    }
}

fn write_row<'f>(
    w: &mut csv::Writer<BufWriter<File>>,
    place: &[u8],
    reason: &[u8],
    fields: impl IntoIterator<Item = &'f [u8]>,
) -> csv::Result<()> {
    w.write_field(place)?;
    w.write_field(reason)?;
    for field in fields {
        w.write_field(field)?;
    }
    w.write_record(None::<&[u8]>)
}

//! Users' data files as JSON records, by extension, the way `datasets.load_dataset` reads
//! them: JSON Lines (`.jsonl`, `.ndjson`, `.json`: one object per non-blank line), Parquet
//! (`.parquet`) or CSV (`.csv`: a header row, every cell text; a cell holding a JSON list,
//! such as a conversational `messages`, is parsed). Each record says where it came from
//! (`file:line`, or `file: row n`) for the errors of whoever reads it.

use std::path::Path;

use serde_json::Value;

use crate::user_err;

/// One record of a data file.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// `file:line` (JSON Lines) or `file: row n` (1-based data row).
    pub at: String,
    pub value: Value,
}

/// The file kinds read.
const KINDS: &str = ".jsonl, .ndjson, .json, .parquet or .csv";

/// Every record of the file at `path`, in file order.
pub fn read(path: &Path) -> anyhow::Result<Vec<Record>> {
    let shown = path.display();
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let csv = match ext.as_str() {
        "jsonl" | "ndjson" | "json" => return read_jsonl(path),
        "csv" => true,
        "parquet" => false,
        _ => anyhow::bail!(user_err!(
            "{shown}: unknown data file kind; name it {KINDS} (its format follows the name)"
        )),
    };
    if !path.is_file() {
        anyhow::bail!(user_err!("{shown}: no such file; check the path"));
    }
    let batches = crate::sql::read_data_file(path, csv)?;
    let lines = crate::sql::render(&batches, crate::sql::Format::Ndjson)?;
    let mut out = Vec::new();
    for (i, line) in lines.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let mut value: Value = serde_json::from_str(line)
            .map_err(|e| crate::internal_err!("{shown}: row {} as JSON: {e}", i + 1))?;
        if csv {
            parse_json_cells(&mut value);
        }
        out.push(Record {
            at: format!("{shown}: row {}", i + 1),
            value,
        });
    }
    Ok(out)
}

fn read_jsonl(path: &Path) -> anyhow::Result<Vec<Record>> {
    let shown = path.display();
    let rows = crate::jsonl::read::<Value>(path, "a JSON object", "one JSON object")?;
    Ok(rows
        .into_iter()
        .map(|(line, value)| Record {
            at: format!("{shown}:{line}"),
            value,
        })
        .collect())
}

/// CSV cells that hold a JSON list (a conversation) as that list.
fn parse_json_cells(row: &mut Value) {
    let Some(obj) = row.as_object_mut() else {
        return;
    };
    for v in obj.values_mut() {
        let Some(s) = v.as_str() else { continue };
        if s.trim_start().starts_with('[')
            && let Ok(parsed @ Value::Array(_)) = serde_json::from_str::<Value>(s)
        {
            *v = parsed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_and_csv_give_the_same_records() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("d.jsonl");
        std::fs::write(
            &jsonl,
            "{\"prompt\": \"1 + 1\", \"completion\": \"2\"}\n\n{\"prompt\": \"a\", \"completion\": \"b\"}\n",
        )
        .unwrap();
        let csv = dir.path().join("d.csv");
        std::fs::write(&csv, "prompt,completion\n1 + 1,2\na,b\n").unwrap();
        let (j, c) = (read(&jsonl).unwrap(), read(&csv).unwrap());
        let values = |r: &[Record]| r.iter().map(|r| r.value.clone()).collect::<Vec<_>>();
        assert_eq!(values(&j), values(&c));
        assert_eq!(j[1].at, format!("{}:3", jsonl.display()));
        assert_eq!(c[1].at, format!("{}: row 2", csv.display()));
        let err = read(&dir.path().join("d.txt")).unwrap_err().to_string();
        assert!(
            err.contains(".jsonl, .ndjson, .json, .parquet or .csv"),
            "{err}"
        );
    }

    #[test]
    fn parquet_rows_read_as_records_with_their_row_numbers() {
        use arrow::array::{ArrayRef, StringArray};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.parquet");
        let col = |v: [&str; 2]| -> ArrayRef { std::sync::Arc::new(StringArray::from(v.to_vec())) };
        let batch = arrow::record_batch::RecordBatch::try_from_iter([
            ("prompt", col(["1 + 1", "a"])),
            ("completion", col(["2", "b"])),
        ])
        .unwrap();
        crate::table::write(&path, &[batch]).unwrap();
        let r = read(&path).unwrap();
        assert_eq!(
            r[1].value,
            serde_json::json!({ "prompt": "a", "completion": "b" })
        );
        assert_eq!(r[0].at, format!("{}: row 1", path.display()));
    }

    #[test]
    fn a_csv_cell_with_a_json_list_is_that_list() {
        let mut row = serde_json::json!({ "messages": "[{\"role\": \"user\", \"content\": \"hi\"}]", "n": "[x" });
        parse_json_cells(&mut row);
        assert_eq!(row["messages"][0]["content"], "hi");
        assert_eq!(row["n"], "[x");
    }
}

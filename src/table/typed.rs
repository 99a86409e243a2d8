//! [`Table`]: one typed definition per table — name, row struct, schema, writer, reader —
//! shared by the stage that writes it and every stage that reads it.
//!
//! A table is defined with [`table!`](crate::table!):
//!
//! ```ignore
//! scir::table! {
//!     /// One row of `pairs`.
//!     pub struct PairRow in "pairs" {
//!         pair_id: i64,
//!         /// A doc comment per column.
//!         response_id_1: i64,
//!         rewards_chosen: Option<f64> as "rewards/chosen",  // a column name that is no identifier
//!     }
//! }
//! ```
//!
//! The schema is `iteration Int32` followed by the fields in order, typed and nullable as
//! their Rust types say ([`Column`]); the row struct leaves `iteration` out (the writer
//! takes it, readers that need it read it with [`Table::iterations`]).

use std::path::Path;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::{Column, ITERATION_COLUMN};

/// A table's typed definition; implemented by [`table!`](crate::table!).
pub trait Table: Sized {
    /// The table's name (its Parquet file and SQL table).
    const NAME: &'static str;
    /// The column names after `iteration`, in order.
    const COLUMNS: &'static [&'static str];
    /// The fields after `iteration`.
    fn fields() -> Vec<Field>;
    /// The columns of `rows`, in field order.
    fn columns(rows: Vec<Self>) -> Vec<ArrayRef>;
    /// The rows of `batch` (the `iteration` column is not part of a row).
    fn from_batch(batch: &RecordBatch) -> anyhow::Result<Vec<Self>>;

    /// The declared schema: `iteration Int32` first.
    fn schema() -> SchemaRef {
        let mut fields = vec![Field::new(ITERATION_COLUMN, DataType::Int32, false)];
        fields.extend(Self::fields());
        Arc::new(Schema::new(fields))
    }
    /// `(name, schema)`, as a stage declares its outputs.
    fn declared() -> (String, SchemaRef) {
        (Self::NAME.to_string(), Self::schema())
    }
    /// A batch of `rows`, every row at iteration `k`.
    fn batch(k: u32, rows: Vec<Self>) -> anyhow::Result<RecordBatch> {
        let k = i32::try_from(k)?;
        let iterations = vec![k; rows.len()];
        Self::batch_at(iterations, rows)
    }
    /// A batch of `rows`, row `i` at iteration `iterations[i]`.
    fn batch_at(iterations: Vec<i32>, rows: Vec<Self>) -> anyhow::Result<RecordBatch> {
        if iterations.len() != rows.len() {
            return Err(crate::internal_err!(
                "table {}: {} iterations for {} rows",
                Self::NAME,
                iterations.len(),
                rows.len()
            )
            .into());
        }
        let mut columns = vec![<i32 as Column>::array(iterations)];
        columns.extend(Self::columns(rows));
        Ok(RecordBatch::try_new(Self::schema(), columns)?)
    }
    /// The rows of the Parquet file at `path`, in file order.
    fn read_path(path: &Path) -> anyhow::Result<Vec<Self>> {
        Ok(Self::read_path_at(path)?
            .into_iter()
            .map(|(_, row)| row)
            .collect())
    }
    /// `(iteration, row)` of every row of the file at `path`, in file order.
    fn read_path_at(path: &Path) -> anyhow::Result<Vec<(i32, Self)>> {
        let mut out = Vec::new();
        for batch in super::read(path)? {
            let context = |e: anyhow::Error| {
                anyhow::anyhow!("{} (table {}): {e}", path.display(), Self::NAME)
            };
            let iterations = <i32 as Column>::read(&batch, ITERATION_COLUMN).map_err(context)?;
            let rows = Self::from_batch(&batch).map_err(context)?;
            out.extend(iterations.into_iter().zip(rows));
        }
        Ok(out)
    }
}

/// Defines a table: its row struct and its [`Table`] impl (see the module docs).
#[macro_export]
macro_rules! table {
    (
        $(#[$meta:meta])*
        $vis:vis struct $row:ident in $name:literal {
            $(
                $(#[$fmeta:meta])*
                $field:ident : $ty:ty $(as $col:literal)?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis struct $row {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $crate::table::Table for $row {
            const NAME: &'static str = $name;
            const COLUMNS: &'static [&'static str] = &[ $( $crate::table!(@name $field $($col)?) ),* ];
            fn fields() -> Vec<arrow::datatypes::Field> {
                vec![ $( <$ty as $crate::table::Column>::field($crate::table!(@name $field $($col)?)) ),* ]
            }
            fn columns(rows: Vec<Self>) -> Vec<arrow::array::ArrayRef> {
                $( let mut $field: Vec<$ty> = Vec::with_capacity(rows.len()); )*
                for row in rows {
                    $( $field.push(row.$field); )*
                }
                vec![ $( <$ty as $crate::table::Column>::array($field) ),* ]
            }
            fn from_batch(
                batch: &arrow::record_batch::RecordBatch,
            ) -> anyhow::Result<Vec<Self>> {
                $(
                    let mut $field = <$ty as $crate::table::Column>::read(
                        batch,
                        $crate::table!(@name $field $($col)?),
                    )?
                    .into_iter();
                )*
                Ok((0..batch.num_rows())
                    .map(|_| $row { $( $field: $field.next().expect("a column shorter than its batch"), )* })
                    .collect())
            }
        }
    };
    (@name $field:ident $col:literal) => { $col };
    (@name $field:ident) => { stringify!($field) };
}

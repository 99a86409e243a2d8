//! [`Column`]: a Rust type as an Arrow column, written and read back.
//!
//! | Rust type            | Arrow type               | nullable |
//! |----------------------|--------------------------|----------|
//! | `i32`, `i64`, `f64`  | Int32, Int64, Float64    | no       |
//! | `bool`, `String`     | Boolean, Utf8            | no       |
//! | `Option<f64>` …      | the same                 | yes      |
//! | `Vec<u32>`           | `List<Int32>` (token ids) | yes (Arrow's list default; a null reads as an error) |
//! | `Option<Vec<u32>>`   | `List<Int32>`            | yes      |
//!
//! Enums stored as text implement it with [`text_column!`](crate::text_column). A read
//! fails with the column's name when the column is missing, has another type, or holds a
//! null where the Rust type has none.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray, StringArray,
};
use arrow::datatypes::{DataType, Field, Int32Type};
use arrow::record_batch::RecordBatch;

/// A Rust type stored as one Arrow column.
pub trait Column: Sized {
    /// The Arrow type of the column.
    fn data_type() -> DataType;
    /// Whether the declared field is nullable.
    const NULLABLE: bool;
    /// The column holding `values`, in order.
    fn array(values: Vec<Self>) -> ArrayRef;
    /// The column `name` of `batch`, one value per row.
    fn read(batch: &RecordBatch, name: &str) -> anyhow::Result<Vec<Self>>;
    /// The declared field named `name`.
    fn field(name: &str) -> Field {
        Field::new(name, Self::data_type(), Self::NULLABLE)
    }
}

/// The column `name` of `batch` as the concrete array type `T`.
pub fn typed_column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> anyhow::Result<&'a T> {
    batch
        .column_by_name(name)
        .ok_or_else(|| anyhow::anyhow!("table has no column {name:?}"))?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| anyhow::anyhow!("column {name:?} has an unexpected type"))
}

fn no_nulls(array: &dyn Array, name: &str) -> anyhow::Result<()> {
    if array.null_count() > 0 {
        anyhow::bail!("column {name:?} holds nulls where none are allowed");
    }
    Ok(())
}

/// `Column` for a type and its `Option`: `$array` holds it, `$own` turns what the array's
/// `iter()` yields into it.
macro_rules! scalar_column {
    ($t:ty, $array:ty, $dt:expr, $own:expr) => {
        impl Column for $t {
            fn data_type() -> DataType {
                $dt
            }
            const NULLABLE: bool = false;
            fn array(values: Vec<Self>) -> ArrayRef {
                Arc::new(<$array>::from(values))
            }
            fn read(batch: &RecordBatch, name: &str) -> anyhow::Result<Vec<Self>> {
                let a = typed_column::<$array>(batch, name)?;
                no_nulls(a, name)?;
                Ok(a.iter().map(|v| v.map($own).unwrap_or_default()).collect())
            }
        }
        impl Column for Option<$t> {
            fn data_type() -> DataType {
                $dt
            }
            const NULLABLE: bool = true;
            fn array(values: Vec<Self>) -> ArrayRef {
                Arc::new(<$array>::from(values))
            }
            fn read(batch: &RecordBatch, name: &str) -> anyhow::Result<Vec<Self>> {
                Ok(typed_column::<$array>(batch, name)?
                    .iter()
                    .map(|v| v.map($own))
                    .collect())
            }
        }
    };
}

scalar_column!(i32, Int32Array, DataType::Int32, |x: i32| x);
scalar_column!(i64, Int64Array, DataType::Int64, |x: i64| x);
scalar_column!(f64, Float64Array, DataType::Float64, |x: f64| x);
scalar_column!(bool, BooleanArray, DataType::Boolean, |b: bool| b);
scalar_column!(String, StringArray, DataType::Utf8, str::to_string);

/// The `List<Int32>` data type of token-id columns (Arrow's default `item` field).
pub fn ids_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true)))
}

impl Column for Option<Vec<u32>> {
    fn data_type() -> DataType {
        ids_type()
    }
    const NULLABLE: bool = true;
    fn array(values: Vec<Self>) -> ArrayRef {
        Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(
            values
                .into_iter()
                .map(|o| o.map(|ids| ids.into_iter().map(|x| Some(x as i32)).collect::<Vec<_>>())),
        ))
    }
    fn read(batch: &RecordBatch, name: &str) -> anyhow::Result<Vec<Self>> {
        let list = typed_column::<ListArray>(batch, name)?;
        (0..list.len())
            .map(|i| {
                if list.is_null(i) {
                    return Ok(None);
                }
                let v = list.value(i);
                let ints = v
                    .as_any()
                    .downcast_ref::<Int32Array>()
                    .ok_or_else(|| anyhow::anyhow!("column {name:?} is not a list of Int32"))?;
                Ok(Some(ints.values().iter().map(|&x| x as u32).collect()))
            })
            .collect()
    }
}

impl Column for Vec<u32> {
    fn data_type() -> DataType {
        ids_type()
    }
    const NULLABLE: bool = true;
    fn array(values: Vec<Self>) -> ArrayRef {
        <Option<Vec<u32>>>::array(values.into_iter().map(Some).collect())
    }
    fn read(batch: &RecordBatch, name: &str) -> anyhow::Result<Vec<Self>> {
        <Option<Vec<u32>>>::read(batch, name)?
            .into_iter()
            .map(|v| v.ok_or_else(|| anyhow::anyhow!("column {name:?} holds a null list")))
            .collect()
    }
}

/// Implements [`Column`] for a fieldless enum stored as text (Utf8), and for its `Option`
/// (nullable). The enum needs `fn as_str(self) -> &'static str` and
/// `fn parse(&str) -> Option<Self>`.
#[macro_export]
macro_rules! text_column {
    ($t:ty) => {
        impl $crate::table::Column for $t {
            fn data_type() -> arrow::datatypes::DataType {
                arrow::datatypes::DataType::Utf8
            }
            const NULLABLE: bool = false;
            fn array(values: Vec<Self>) -> arrow::array::ArrayRef {
                let s: Vec<&str> = values.into_iter().map(<$t>::as_str).collect();
                std::sync::Arc::new(arrow::array::StringArray::from(s))
            }
            fn read(
                batch: &arrow::record_batch::RecordBatch,
                name: &str,
            ) -> anyhow::Result<Vec<Self>> {
                <String as $crate::table::Column>::read(batch, name)?
                    .iter()
                    .map(|s| {
                        <$t>::parse(s)
                            .ok_or_else(|| anyhow::anyhow!("column {name:?}: unknown value {s:?}"))
                    })
                    .collect()
            }
        }
        impl $crate::table::Column for Option<$t> {
            fn data_type() -> arrow::datatypes::DataType {
                arrow::datatypes::DataType::Utf8
            }
            const NULLABLE: bool = true;
            fn array(values: Vec<Self>) -> arrow::array::ArrayRef {
                let s: Vec<Option<&str>> =
                    values.into_iter().map(|v| v.map(<$t>::as_str)).collect();
                std::sync::Arc::new(arrow::array::StringArray::from(s))
            }
            fn read(
                batch: &arrow::record_batch::RecordBatch,
                name: &str,
            ) -> anyhow::Result<Vec<Self>> {
                <Option<String> as $crate::table::Column>::read(batch, name)?
                    .iter()
                    .map(|s| match s {
                        None => Ok(None),
                        Some(s) => <$t>::parse(s)
                            .map(Some)
                            .ok_or_else(|| anyhow::anyhow!("column {name:?}: unknown value {s:?}")),
                    })
                    .collect()
            }
        }
    };
}

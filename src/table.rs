//! Byte-deterministic Parquet writing and reading.

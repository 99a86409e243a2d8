//! `scir sql`: DataFusion over the public tables and run records.

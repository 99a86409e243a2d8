//! `scir report`: how the eval tables are shown (the numbers come from [`crate::eval`]).
//!
//! ```text
//! seeds     several seeds' runs side by side: mean ± sd, paired differences vs the spread
//! view      the public `eval` table (all arms and iterations) as a [`Report`]; text and JSON
//! plot      line charts (plotters into an RGB buffer, embedded DejaVu Sans Mono)
//! png       the minimal PNG writer the charts use
//! markdown  artifacts/report/: report.md + the PNGs, written atomically per file
//! html      artifacts/report/index.html: summary, charts and a pair browser in one page
//! tensorboard  artifacts/tensorboard/<arm>/<task>/: training metrics as TensorBoard scalars
//! ```
//!
//! The metric names are listed in [`crate::eval`].
//!
//! The report is not a stage: a task belongs to one arm's unrolled DAG, and
//! the report compares arms. It is a view of the public `eval` table (like
//! `artifacts/tables/` is a view of the store): [`write_report`] rebuilds
//! `artifacts/report/` from it, byte for byte the same for the same table;
//! `scir report` calls it, and [`refresh`] is the hook for the end of `scir run`.

pub mod html;
pub mod markdown;
pub mod plot;
pub mod png;
pub mod seeds;
pub mod tensorboard;
pub mod view;

pub use markdown::{refresh, write_report};
pub use view::{Report, load};

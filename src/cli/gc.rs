//! `scir gc`: drop what nothing needs.

use std::process::ExitCode;

use clap::Args;

use super::StoreArgs;
use crate::engine::lock;
use crate::engine::store::{Store, maintain};

/// Remove objects that no ref points at (the results of older params or
/// code versions) and staging dirs of finished or killed runs. Objects of the
/// latest run of every task are kept; a running run is never disturbed.
#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only report what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

const MIB: f64 = 1024.0 * 1024.0;

/// Run `scir gc`.
pub fn run(args: &GcArgs) -> anyhow::Result<ExitCode> {
    let store = Store::new(&args.store.artifacts);
    if !store.layout.internal().exists() {
        outln!("nothing to collect in {}", store.root.display());
        return Ok(ExitCode::SUCCESS);
    }
    let _g = lock::hold(&store.layout.global_lock(), "gc", "collecting garbage")?;
    let r = maintain::gc(&store, args.dry_run)?;
    if let Some(run) = &r.live_run {
        outln!("run {run} is in progress: objects are kept; run gc again when it is over");
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    outln!(
        "{verb} {} objects, {} staging dirs and {} resume dirs ({:.1} MiB); kept {} objects",
        r.objects,
        r.tmp_dirs,
        r.resume_dirs,
        r.bytes as f64 / MIB,
        r.kept
    );
    Ok(ExitCode::SUCCESS)
}

//! `scir verify`: re-hash every object against its manifest.

use std::process::ExitCode;

use clap::Args;

use super::StoreArgs;
use crate::engine::cache::short_key;
use crate::engine::lock::{self, Holder, Wait};
use crate::engine::store::{Store, maintain};

/// Re-hash every object in the store against its manifest (catches bit rot
/// and edits). Exits 1 when something is damaged; `--fix` removes damaged
/// objects so the next `scir run` recomputes them.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Remove damaged objects (they are recomputed by the next run).
    #[arg(long)]
    pub fix: bool,
}

/// Run `scir verify`.
pub fn run(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let store = Store::new(&args.store.artifacts);
    let (n, problems) = maintain::verify(&store)?;
    for p in &problems {
        outln!("damaged {}: {}", short_key(&p.key), p.what);
    }
    if args.fix && !problems.is_empty() {
        let me = Holder {
            run_id: "verify".into(),
            pid: std::process::id(),
            doing: "removing damaged objects".into(),
        };
        let _g = lock::acquire(&store.layout.global_lock(), &me, Wait::Block, &|m| {
            eprintln!("{m}")
        })?;
        let mut keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        keys.dedup();
        for key in keys {
            maintain::quarantine(&store, key)?;
            outln!("removed {}", short_key(key));
        }
    }
    outln!("{n} objects checked, {} problems", problems.len());
    Ok(if problems.is_empty() || args.fix {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

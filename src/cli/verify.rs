//! `scir verify`: re-hash every object against its manifest, and check the public view
//! against the refs.

use std::process::ExitCode;

use clap::Args;

use super::StoreArgs;
use crate::engine::cache::short_key;
use crate::engine::lock;
use crate::engine::store::{Store, maintain, view};

/// Re-hash every object in the store against its manifest (catches bit rot and edits),
/// and check that every file under tables/ and models/ is one the refs publish, equal to
/// what its object publishes (catches strays, truncated or edited public files, swapped
/// model links). Exits 1 when something is wrong. `--fix` removes damaged objects so the
/// next `scir run` recomputes them; `--repair` re-publishes the public view from the store
/// without running any stage.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Remove damaged objects (they are recomputed by the next run).
    #[arg(long)]
    pub fix: bool,
    /// Re-publish the public view (tables/, models/) from the store: strays removed,
    /// every public file written again from its object. Nothing is recomputed.
    #[arg(long)]
    pub repair: bool,
}

/// Run `scir verify`.
pub fn run(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let store = Store::new(&args.store.artifacts);
    let (n, problems) = maintain::verify(&store)?;
    for p in &problems {
        outln!("damaged {}: {}", short_key(&p.key), p.what);
    }
    if args.fix && !problems.is_empty() {
        let _g = lock::hold(
            &store.layout.global_lock(),
            "verify",
            "removing damaged objects",
        )?;
        let mut keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        keys.dedup();
        for key in keys {
            maintain::quarantine(&store, key)?;
            outln!("removed {}", short_key(key));
        }
    }
    if args.repair {
        let _g = lock::hold(
            &store.layout.global_lock(),
            "verify",
            "re-publishing the public view",
        )?;
        view::repair(&store)?;
        outln!("re-published the public view from the store");
    }
    let view_problems = view::verify(&store)?;
    for p in &view_problems {
        outln!("public {}: {}", p.path, p.what);
    }
    if !view_problems.is_empty() {
        outln!(
            "run `scir verify --repair --artifacts {}` to re-publish the public view from the \
             store (nothing is recomputed)",
            args.store.artifacts.display()
        );
    }
    outln!(
        "{n} objects checked, {} problems; public view: {} problems",
        problems.len(),
        view_problems.len()
    );
    let objects_ok = problems.is_empty() || args.fix;
    Ok(if objects_ok && view_problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

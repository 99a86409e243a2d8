//! After a task is done: refs and the public view, under the global lock.

use crate::engine::dag::{Dag, Node};
use crate::engine::lock::{self, Holder, Wait};
use crate::engine::store::{Store, view};

use super::State;

/// Point refs of every arm of `node` at `key` and republish, under the global lock.
pub(super) fn publish(store: &Store, run_id: &str, node: &Node, key: &str) -> anyhow::Result<()> {
    let me = Holder::me(run_id, format!("publishing {}", node.task));
    let _g = lock::acquire(&store.layout.global_lock(), &me, Wait::Block, &|_| {})?;
    if store.manifest(key).is_none() {
        anyhow::bail!(
            "object {key} of {} vanished (did `scir gc` run concurrently?); run again",
            node.task
        );
    }
    let mut refs = store.read_refs()?;
    let before = refs.clone();
    for arm in &node.arms {
        refs.entry(arm.clone())
            .or_default()
            .insert(node.task.clone(), key.to_string());
    }
    if refs == before {
        // Already current (an all-hit run): the final sync checks the view.
        return Ok(());
    }
    store.write_refs(&refs)?;
    crate::engine::store::failpoint(crate::failpoint::site::AFTER_REFS);
    view::sync(store, &refs, false)
}

/// After a complete run: refs hold exactly this plan's tasks; prune the view.
pub(super) fn finish_full_run(
    store: &Store,
    dag: &Dag,
    states: &[State],
    run_id: &str,
) -> anyhow::Result<()> {
    let me = Holder::me(run_id, "publishing");
    let _g = lock::acquire(&store.layout.global_lock(), &me, Wait::Block, &|_| {})?;
    let mut refs = crate::engine::store::Refs::new();
    for (node, state) in dag.nodes.iter().zip(states) {
        if let State::Done(m) = state
            && node.shard.is_none()
        {
            for arm in &node.arms {
                refs.entry(arm.clone())
                    .or_default()
                    .insert(node.task.clone(), m.key.clone());
            }
        }
    }
    store.write_refs(&refs)?;
    view::sync(store, &refs, true)
}

//! Per arm: one stage's params resolved (arm overrides deep-merged, typed by
//! its kind) and its input slots bound (explicitly or by the kind's defaults).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use serde_saphyr::Spanned;

use super::{Binding, Loc, Reference, ResolvedStage, StageFile, placement};
use crate::engine::stage::{Outputs, Registry, ResolvedParams, StageKind};
use crate::table::ITERATION_COLUMN;
use crate::user_err;

/// Deep-merge `over` into `base`: mappings merge key by key, anything else replaces.
pub fn deep_merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                deep_merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

pub(super) fn resolve_stage(
    path: &Path,
    dir: &Path,
    registry: &Registry,
    name: &str,
    spec: &Spanned<StageFile>,
    over: Option<&&Spanned<Value>>,
    arm: &str,
) -> anyhow::Result<ResolvedStage> {
    let loc = Loc::of(spec);
    let s = &spec.value;
    let at = |l: Loc| format!("{}:{}:{}", path.display(), l.line, l.col);
    let (kind, kind_loc) = match &s.kind {
        Some(k) => (k.value.as_str(), Loc::of(k)),
        None => (name, loc),
    };
    let Some(stage) = registry.get(kind).copied() else {
        let known: Vec<&str> = registry.keys().copied().collect();
        return Err(user_err!(
            "{}: stage {name:?} has kind {kind:?}, which scir does not know\nKnown kinds: {}. Set \
             `kind:` to one of them.",
            at(kind_loc),
            known.join(", ")
        )
        .into());
    };
    let mut raw = s.params.as_ref().map_or(Value::Null, |p| p.value.clone());
    let params_loc = s.params.as_ref().map_or(loc, Loc::of);
    if let Some(o) = over {
        if raw.is_null() {
            raw = serde_json::json!({});
        }
        deep_merge(&mut raw, &o.value);
    }
    let params = stage.resolve(raw).map_err(|e| {
        let field = if e.path.is_empty() {
            "params".to_string()
        } else {
            format!("params.{}", e.path)
        };
        let arm_note = match over {
            Some(o) => format!(" (with arm {arm:?}'s overrides at {})", at(Loc::of(o))),
            None => String::new(),
        };
        user_err!(
            "{}: stage {name:?}{arm_note}, {field}: {}\nFix that param; `scir dag` lists the \
             stages and their kinds.",
            at(params_loc),
            e.message
        )
    })?;
    let bindings = bind_inputs(path, name, stage, s, &params, loc)?;
    let mut externals = BTreeMap::new();
    for file in stage.external_files(&params) {
        let full = dir.join(&file);
        if !full.exists() {
            return Err(user_err!(
                "{}: stage {name:?} reads {} ({}), which does not exist\nCreate it or fix the \
                 path (relative to the pipeline file's directory).",
                at(params_loc),
                file.display(),
                full.display()
            )
            .into());
        }
        externals.insert(file.display().to_string(), full);
    }
    let outputs = stage.outputs(&params);
    check_outputs(&stage, &outputs)?;
    let shards = placement::shards(&at, name, stage.shardable(), s.shards.as_ref())?;
    let resources = placement::resources(&at, name, s.resources.as_ref())?;
    Ok(ResolvedStage {
        name: name.to_string(),
        stage,
        each_iteration: s.each_iteration,
        loc,
        params,
        bindings,
        outputs,
        externals,
        shards,
        resources,
    })
}

fn bind_inputs(
    path: &Path,
    name: &str,
    stage: StageKind,
    s: &StageFile,
    params: &ResolvedParams,
    loc: Loc,
) -> anyhow::Result<BTreeMap<String, Binding>> {
    let slots: Vec<&str> = stage.inputs().iter().map(|s| s.name).collect();
    let mut out = BTreeMap::new();
    for (slot, text) in &s.inputs {
        let l = Loc::of(text);
        if !slots.contains(&slot.as_str()) {
            let known = if slots.is_empty() {
                "none".to_string()
            } else {
                slots.join(", ")
            };
            return Err(user_err!(
                "{}:{}:{}: stage {name:?} (kind {}) has no input slot {slot:?}\nIts slots: {known}.",
                path.display(),
                l.line,
                l.col,
                stage.kind()
            )
            .into());
        }
        let reference = Reference::parse(&text.value).map_err(|msg| {
            user_err!(
                "{}:{}:{}: stage {name:?}, inputs.{slot}: {msg}",
                path.display(),
                l.line,
                l.col
            )
        })?;
        out.insert(
            slot.clone(),
            Binding {
                text: text.value.clone(),
                reference,
                loc: l,
                default: false,
            },
        );
    }
    for (slot, text) in stage.default_bindings(params) {
        if out.contains_key(slot) {
            continue;
        }
        let reference = Reference::parse(&text).map_err(|msg| {
            crate::internal_err!("default binding {text:?} of {}: {msg}", stage.kind())
        })?;
        out.insert(
            slot.to_string(),
            Binding {
                text,
                reference,
                loc,
                default: true,
            },
        );
    }
    // An optional slot without a default may stay unbound (Slot::optional).
    let required = stage
        .inputs()
        .iter()
        .filter(|s| !(s.optional && s.default.is_none()));
    if let Some(missing) = required.map(|s| s.name).find(|s| !out.contains_key(*s)) {
        return Err(user_err!(
            "{}:{}:{}: stage {name:?} does not bind its input slot {missing:?}\nAdd `inputs: {{ \
             {missing}: STAGE }}` (STAGE, STAGE@k-1, model@k-1, model@initial …).",
            path.display(),
            loc.line,
            loc.col
        )
        .into());
    }
    Ok(out)
}

/// Every table a stage declares carries an Int32 `iteration` column (a bug
/// in the stage otherwise, not the user's fault).
fn check_outputs(stage: &StageKind, outputs: &Outputs) -> anyhow::Result<()> {
    for (name, schema) in &outputs.tables {
        let ok = schema
            .field_with_name(ITERATION_COLUMN)
            .is_ok_and(|f| *f.data_type() == arrow::datatypes::DataType::Int32);
        if !ok {
            return Err(crate::internal_err!(
                "stage kind {} declares table {name:?} without an Int32 `{ITERATION_COLUMN}` column",
                stage.kind()
            )
            .into());
        }
    }
    Ok(())
}

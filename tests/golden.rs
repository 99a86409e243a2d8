//! A forgotten `VERSION` bump fails here. The SCIR smoke pipeline (`tests/smoke/scir.yaml`)
//! runs and every task's key and output digest are compared with
//! `tests/fixtures/golden/smoke-outputs.json`. A task whose key is unchanged (same stage
//! `VERSION`, params, seed and inputs) but whose outputs changed means its stage's code
//! changed what it writes without a `VERSION` bump: cached objects of the old code would be
//! reused as if nothing had changed. The test names those stages.
//!
//! When outputs change on purpose (versions bumped, or the smoke pipeline edited),
//! re-record: `SCIR_RECORD_GOLDEN=1 cargo test golden`, and commit the file. Floats depend
//! on the CPU's SIMD level (gemm's AVX-512 and AVX2 kernels sum in different orders), so
//! the file records the level it was made on and the test refuses to compare across levels.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::util::scir;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/golden/smoke-outputs.json"
);
const SMOKE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smoke");
/// Set to re-record the golden file.
const RECORD_ENV: &str = "SCIR_RECORD_GOLDEN";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Golden {
    /// The SIMD level the digests were made on.
    cpu: String,
    /// `arm/task` → what it computed.
    tasks: BTreeMap<String, Task>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Task {
    stage: String,
    version: u32,
    key: String,
    output: String,
}

fn cpu_level() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return "x86_64-avx512".into();
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return "x86_64-avx2".into();
        }
        "x86_64".into()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.into()
    }
}

/// Run the smoke pipeline and read every task of the refs.
fn run_smoke() -> Golden {
    let dir = tempfile::tempdir().unwrap();
    for f in ["scir.yaml", "judge_pointwise.txt"] {
        std::fs::copy(Path::new(SMOKE_DIR).join(f), dir.path().join(f)).unwrap();
    }
    let art = dir.path().join("artifacts");
    let pipeline = dir.path().join("scir.yaml");
    let out = scir(&[
        "run",
        pipeline.to_str().unwrap(),
        "--artifacts",
        art.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = scir::engine::store::Store::new(&art);
    let mut tasks = BTreeMap::new();
    for (arm, refs) in store.read_refs().unwrap() {
        for (task, key) in refs {
            let m = store.manifest(&key).unwrap();
            let entry = Task {
                stage: m.material.kind.clone(),
                version: m.material.version,
                key,
                output: m.output_digest,
            };
            tasks.insert(format!("{arm}/{task}"), entry);
        }
    }
    Golden {
        cpu: cpu_level(),
        tasks,
    }
}

#[test]
fn changed_outputs_need_a_version_bump() {
    let now = run_smoke();
    if std::env::var_os(RECORD_ENV).is_some() {
        let text = serde_json::to_string_pretty(&now).unwrap() + "\n";
        std::fs::write(GOLDEN, text).unwrap();
        return;
    }
    let golden: Golden = serde_json::from_str(&std::fs::read_to_string(GOLDEN).unwrap()).unwrap();
    assert_eq!(
        golden.cpu, now.cpu,
        "{GOLDEN} was recorded on {}, this CPU is {}: floats round differently across SIMD \
         levels, so record a golden file here ({RECORD_ENV}=1 cargo test golden) to use this \
         check on this machine",
        golden.cpu, now.cpu
    );
    let mut forgotten: Vec<String> = golden
        .tasks
        .iter()
        .filter_map(|(name, g)| {
            let n = now.tasks.get(name)?;
            (n.key == g.key && n.output != g.output)
                .then(|| format!("{} (VERSION {}; {name})", g.stage, g.version))
        })
        .collect();
    forgotten.sort();
    forgotten.dedup();
    assert!(
        forgotten.is_empty(),
        "these stages write different outputs for the same key: bump their VERSION (src/stages/), \
         then re-record with {RECORD_ENV}=1 cargo test golden:\n  {}",
        forgotten.join("\n  ")
    );
    assert!(
        golden == now,
        "the smoke pipeline's tasks changed (a VERSION bump or an edited pipeline): re-record \
         with {RECORD_ENV}=1 cargo test golden and commit {GOLDEN}"
    );
}

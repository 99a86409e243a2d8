//! `scir sql`: tables over a hand-built artifacts directory.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use arrow::array::{Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use scir::sql::{self, Format};

/// Write `artifacts/tables/<table>/iter-NNNN.<arm>.parquet` with `n` rows.
fn write_table(artifacts: &Path, table: &str, iteration: i32, arm: &str, n: i64) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("iteration", DataType::Int32, false),
        Field::new("arm", DataType::Utf8, false),
        Field::new("id", DataType::Int64, false),
        Field::new("text", DataType::Utf8, false),
    ]));
    let ids: Vec<i64> = (0..n).collect();
    let texts: Vec<String> = ids.iter().map(|i| format!("row{i}")).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int32Array::from(vec![iteration; n as usize])),
            Arc::new(StringArray::from(vec![arm; n as usize])),
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(texts)),
        ],
    )
    .unwrap();
    let dir = artifacts.join("tables").join(table);
    fs::create_dir_all(&dir).unwrap();
    let file = fs::File::create(dir.join(format!("iter-{iteration:04}.{arm}.parquet"))).unwrap();
    let mut writer = ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn artifacts() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_table(dir.path(), "prompts", 1, "all", 3);
    write_table(dir.path(), "prompts", 2, "all", 4);
    write_table(dir.path(), "responses", 1, "scir", 2);
    dir
}

fn query_csv(artifacts: &Path, q: &str) -> String {
    let (batches, warnings) = sql::query(artifacts, q).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    sql::render(&batches, Format::Csv).unwrap()
}

#[test]
fn sql_queries_every_iteration_file() {
    let dir = artifacts();
    let out = query_csv(
        dir.path(),
        "SELECT iteration, count(*) AS n FROM prompts GROUP BY iteration ORDER BY iteration",
    );
    assert_eq!(out, "iteration,n\n1,3\n2,4\n");
}

#[test]
fn sql_show_tables_lists_tables_and_run_records() {
    let dir = artifacts();
    let out = query_csv(
        dir.path(),
        "SELECT table_name FROM information_schema.tables \
         WHERE table_schema = 'public' ORDER BY table_name",
    );
    assert_eq!(
        out,
        "table_name\nprompts\nresponses\nscir_runs\nscir_tasks\n"
    );
    let (batches, _) = sql::query(dir.path(), "SHOW TABLES").unwrap();
    let shown = sql::render(&batches, Format::Csv).unwrap();
    assert!(
        shown.contains("prompts") && shown.contains("scir_tasks"),
        "{shown}"
    );
}

#[test]
fn sql_formats_csv_json_ndjson_table() {
    let dir = artifacts();
    let q = "SELECT id, text FROM responses ORDER BY id";
    let (batches, _) = sql::query(dir.path(), q).unwrap();
    assert_eq!(
        sql::render(&batches, Format::Csv).unwrap(),
        "id,text\n0,row0\n1,row1\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&sql::render(&batches, Format::Json).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{"id": 0, "text": "row0"}, {"id": 1, "text": "row1"}])
    );
    let ndjson = sql::render(&batches, Format::Ndjson).unwrap();
    assert_eq!(ndjson.lines().count(), 2, "{ndjson}");
    let table = sql::render(&batches, Format::Table).unwrap();
    assert!(table.contains("| id | text |"), "{table}");
}

#[test]
fn sql_empty_result_keeps_header() {
    let dir = artifacts();
    let out = query_csv(dir.path(), "SELECT id, text FROM prompts WHERE id < 0");
    assert_eq!(out, "id,text\n");
    let (batches, _) = sql::query(dir.path(), "SELECT id FROM prompts WHERE id < 0").unwrap();
    assert!(
        sql::render(&batches, Format::Table)
            .unwrap()
            .contains("| id |")
    );
}

#[test]
fn sql_string_functions_are_available() {
    let dir = artifacts();
    let out = query_csv(
        dir.path(),
        "SELECT length(text) AS l, substr(text, 1, 3) AS s, substring(text FROM 2 FOR 2) AS f, \
         upper(text) AS u, regexp_like(text, '^row[0-9]$') AS r, \
         extract(year FROM to_timestamp('2026-11-27T08:00:00Z')) AS y \
         FROM responses ORDER BY id LIMIT 1",
    );
    assert_eq!(out, "l,s,f,u,r,y\n4,row,ow,ROW0,true,2026\n");
}

#[test]
fn sql_syntax_error_is_a_user_error() {
    let dir = artifacts();
    let err = sql::query(dir.path(), "SELEC * FROM prompts").unwrap_err();
    assert_eq!(scir::error::exit_code(&err), 2);
    let msg = format!("{err:#}");
    assert!(msg.contains("SQL error") && msg.contains("SELEC"), "{msg}");
    let err = sql::query(dir.path(), "SELECT nope FROM prompts").unwrap_err();
    assert_eq!(scir::error::exit_code(&err), 2);
    assert!(format!("{err:#}").contains("nope"), "{err:#}");
}

#[test]
fn sql_ignores_truncated_temp_file() {
    let dir = artifacts();
    let table = dir.path().join("tables/prompts");
    let good = fs::read(table.join("iter-0001.all.parquet")).unwrap();
    fs::write(
        table.join("iter-0003.all.parquet.new"),
        &good[..good.len() / 2],
    )
    .unwrap();
    let out = query_csv(dir.path(), "SELECT count(*) AS n FROM prompts");
    assert_eq!(out, "n\n7\n");
    // A directory holding only temp files is no table at all.
    let only_tmp = dir.path().join("tables/pending");
    fs::create_dir_all(&only_tmp).unwrap();
    fs::write(only_tmp.join("iter-0001.all.parquet.new"), b"PAR1").unwrap();
    let names: Vec<String> = sql::table_dirs(dir.path())
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, ["prompts", "responses"]);
}

#[test]
fn sql_missing_artifacts_says_to_run_first() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let err = sql::query(&missing, "SHOW TABLES").unwrap_err();
    assert_eq!(scir::error::exit_code(&err), 2);
    assert!(format!("{err}").contains("scir run"), "{err}");
    let err = sql::emit_rc(dir.path()).unwrap_err();
    assert_eq!(scir::error::exit_code(&err), 2);
}

#[test]
fn sql_emit_rc_registers_absolute_dirs() {
    let dir = artifacts();
    let rc = sql::emit_rc(dir.path()).unwrap();
    let statements: Vec<&str> = rc.lines().filter(|l| !l.starts_with("--")).collect();
    let abs = std::path::absolute(dir.path()).unwrap();
    let expected: Vec<String> = ["prompts", "responses"]
        .iter()
        .map(|t| {
            format!(
                "CREATE EXTERNAL TABLE {t} STORED AS PARQUET LOCATION '{}/tables/{t}/';",
                abs.display()
            )
        })
        .collect();
    assert_eq!(statements, expected);
    assert_eq!(sql::quote_ident("Odd-name"), "\"Odd-name\"");
}

fn write_run(artifacts: &Path, run_id: &str, json: serde_json::Value) {
    let dir = artifacts.join(".scir/runs").join(run_id);
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("run.json"),
        serde_json::to_vec_pretty(&json).unwrap(),
    )
    .unwrap();
}

#[test]
fn sql_run_records_are_tables() {
    let dir = artifacts();
    let task = |name: &str, status: &str, rows: serde_json::Value| {
        serde_json::json!({"task": name, "stage": "world", "iteration": 0, "arm": null,
            "key": "abc", "status": status, "reason": "new", "seconds": 1.5,
            "rows": rows, "log": "logs/x.log", "future_field": 1})
    };
    write_run(
        dir.path(),
        "20261127T080000Z-1",
        serde_json::json!({"run_id": "r1", "started_at": "2026-11-27T08:00:00Z",
            "finished_at": "2026-11-27T08:00:02.5Z", "argv": ["scir", "run"],
            "pipeline": "pipeline.yaml", "pipeline_digest": "d", "status": "ok",
            "tasks": [task("world@0", "ran", serde_json::json!({"prompts": 3, "ift": 4})),
                      task("sft@0", "failed", serde_json::json!({}))]}),
    );
    write_run(
        dir.path(),
        "20261127T080100Z-2",
        serde_json::json!({"run_id": "r2", "started_at": "2026-11-27T08:01:00Z",
            "finished_at": null, "argv": [], "status": "running", "tasks": []}),
    );
    let runs = query_csv(
        dir.path(),
        "SELECT run_id, seconds, argv, tasks, ran, failed, hit FROM scir_runs ORDER BY run_id",
    );
    assert_eq!(
        runs,
        "run_id,seconds,argv,tasks,ran,failed,hit\nr1,2.5,scir run,2,1,1,0\nr2,,,0,0,0,0\n"
    );
    let tasks = query_csv(
        dir.path(),
        "SELECT run_id, task, status, rows, rows_json FROM scir_tasks ORDER BY task DESC",
    );
    assert_eq!(
        tasks,
        "run_id,task,status,rows,rows_json\nr1,world@0,ran,7,\"{\"\"ift\"\":4,\"\"prompts\"\":3}\"\n\
         r1,sft@0,failed,0,{}\n"
    );
    // A broken record is skipped with a warning, not fatal.
    let bad = dir.path().join(".scir/runs/zz-broken");
    fs::create_dir_all(&bad).unwrap();
    fs::write(bad.join("run.json"), b"{\"run_id\": ").unwrap();
    let (batches, warnings) = sql::query(dir.path(), "SELECT count(*) FROM scir_runs").unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let n = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!((n.len(), n.value(0)), (1, 2));
}

#[test]
fn sql_cli_exit_codes_and_output() {
    let dir = artifacts();
    let scir = env!("CARGO_BIN_EXE_scir");
    let run = |args: &[&str]| {
        Command::new(scir)
            .arg("sql")
            .args(args)
            .arg("--artifacts")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let ok = run(&["--format", "csv", "SELECT count(*) AS n FROM responses"]);
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "n\n2\n");
    let bad = run(&["SELECT FROM WHERE"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).starts_with("error: SQL error"));
    let rc = run(&["--emit-rc"]);
    assert!(rc.status.success(), "{rc:?}");
    assert!(String::from_utf8_lossy(&rc.stdout).contains("CREATE EXTERNAL TABLE prompts"));
}

#[test]
fn sql_reads_the_world_tables() {
    let dir = tempfile::tempdir().unwrap();
    let params = scir::world::WorldParams {
        iterations: 2,
        prompts_per_iteration: 5,
        ift_examples: 7,
        eft_pointwise: 3,
        eft_pairwise: 4,
        eval_prompts: 2,
        gold_pairs: 3,
        ..Default::default()
    };
    for (name, batch) in scir::world::generate(&params).unwrap() {
        let table = dir.path().join("tables").join(&name);
        fs::create_dir_all(&table).unwrap();
        let file = fs::File::create(table.join("iter-0000.all.parquet")).unwrap();
        let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }
    let out = query_csv(
        dir.path(),
        "SELECT (SELECT count(*) FROM prompts WHERE iteration = 2) AS p2, \
         (SELECT count(*) FROM eft WHERE mode = 'pairwise') AS pairs, \
         (SELECT count(*) FROM gold_pairs) AS gold",
    );
    assert_eq!(out, "p2,pairs,gold\n5,4,3\n");
}

#[test]
fn sql_leaves_out_a_corrupt_table_with_a_warning() {
    let dir = artifacts();
    let table = dir.path().join("tables/responses");
    let good = fs::read(table.join("iter-0001.scir.parquet")).unwrap();
    fs::write(
        table.join("iter-0002.scir.parquet"),
        &good[..good.len() / 2],
    )
    .unwrap();
    let (batches, warnings) = sql::query(dir.path(), "SELECT count(*) AS n FROM prompts").unwrap();
    assert_eq!(sql::render(&batches, Format::Csv).unwrap(), "n\n7\n");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("`responses`"), "{warnings:?}");
    let err = sql::query(dir.path(), "SELECT * FROM responses").unwrap_err();
    assert_eq!(scir::error::exit_code(&err), 2);
}

#[cfg(unix)]
#[test]
fn sql_follows_symlinked_table_files() {
    let dir = artifacts();
    let objects = dir.path().join("objects");
    fs::create_dir_all(&objects).unwrap();
    let table = dir.path().join("tables/responses");
    let real = objects.join("data.parquet");
    fs::rename(table.join("iter-0001.scir.parquet"), &real).unwrap();
    std::os::unix::fs::symlink(&real, table.join("iter-0001.scir.parquet")).unwrap();
    let out = query_csv(dir.path(), "SELECT count(*) AS n FROM responses");
    assert_eq!(out, "n\n2\n");
}

/// `scir sql` never writes: every statement that would (DDL, DML, COPY) or that is not a
/// query, SHOW, EXPLAIN or SET exits 2 with a message that says how to save a result, and
/// leaves every byte under the artifacts directory as it was.
#[test]
fn sql_is_read_only() {
    let dir = artifacts();
    let outside = dir.path().join("elsewhere.csv");
    let before = crate::util::snapshot(dir.path());
    let art = dir.path().to_str().unwrap();
    let refused = [
        "INSERT INTO prompts SELECT * FROM prompts LIMIT 1".to_string(),
        format!("COPY (SELECT 1 AS x) TO '{art}/tables/prompts/x.parquet' STORED AS PARQUET"),
        "CREATE TABLE t AS SELECT 1".to_string(),
        format!(
            "COPY (SELECT 1 AS x) TO '{}' STORED AS CSV",
            outside.display()
        ),
        "DROP TABLE prompts".to_string(),
        format!("CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '{art}/x.csv'"),
        "CREATE VIEW v AS SELECT 1".to_string(),
        "PREPARE p AS SELECT 1".to_string(),
    ];
    for q in &refused {
        let out = crate::util::scir(&["sql", q, "--artifacts", art]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{q}: {err}");
        assert!(
            err.contains("SQL over artifacts is read-only") && err.contains("--format csv >"),
            "{q}: {err}"
        );
        assert_eq!(
            crate::util::snapshot(dir.path()),
            before,
            "{q} changed the artifacts"
        );
        assert!(!outside.exists(), "{q} wrote outside the artifacts");
    }
    for q in [
        "SELECT count(*) AS n FROM prompts",
        "SHOW TABLES",
        "EXPLAIN SELECT * FROM prompts",
        "SET datafusion.execution.batch_size = 1024",
    ] {
        let out = crate::util::scir(&["sql", q, "--artifacts", art]);
        assert!(
            out.status.success(),
            "{q}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(crate::util::snapshot(dir.path()), before);
}

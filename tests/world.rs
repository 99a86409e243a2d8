//! The built-in world: determinism, gold scorer, noise rates, held-out sets,
//! parameter errors, formats and the tokenizer.

use std::collections::BTreeSet;

use arrow::array::{Array, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use scir::world::{self, TaskKind, WorldParams, format, gold};

fn small() -> WorldParams {
    WorldParams {
        iterations: 2,
        prompts_per_iteration: 50,
        ift_examples: 2000,
        eft_pointwise: 2000,
        eft_pairwise: 2000,
        judge_prompts: 300,
        eval_prompts: 100,
        gold_pairs: 500,
        ..WorldParams::default()
    }
}

fn table(tables: &[(String, RecordBatch)], name: &str) -> RecordBatch {
    tables.iter().find(|(n, _)| n == name).unwrap().1.clone()
}

fn strs(batch: &RecordBatch, col: &str) -> Vec<Option<String>> {
    let array = batch.column_by_name(col).unwrap();
    let array = array.as_any().downcast_ref::<StringArray>().unwrap();
    (0..array.len())
        .map(|i| array.is_valid(i).then(|| array.value(i).to_string()))
        .collect()
}

fn str_col(batch: &RecordBatch, col: &str) -> Vec<String> {
    strs(batch, col).into_iter().map(Option::unwrap).collect()
}

fn bools(batch: &RecordBatch, col: &str) -> Vec<bool> {
    let array = batch.column_by_name(col).unwrap();
    let array = array.as_any().downcast_ref::<BooleanArray>().unwrap();
    (0..array.len()).map(|i| array.value(i)).collect()
}

fn floats(batch: &RecordBatch, col: &str) -> Vec<f64> {
    let array = batch.column_by_name(col).unwrap();
    array
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap()
        .values()
        .to_vec()
}

fn fraction(flags: impl Iterator<Item = bool>) -> f64 {
    let (mut hits, mut n) = (0, 0);
    for f in flags {
        hits += f as usize;
        n += 1;
    }
    hits as f64 / n as f64
}

#[test]
fn world_same_params_same_batches_other_seed_differs() {
    let p = small();
    let a = world::generate(&p).unwrap();
    let b = world::generate(&p).unwrap();
    assert_eq!(a, b);
    let c = world::generate(&WorldParams { seed: 1, ..small() }).unwrap();
    for ((name, x), (_, y)) in a.iter().zip(&c) {
        assert_ne!(x, y, "table {name} did not change with the seed");
    }
}

#[test]
fn world_tables_match_schemas_and_ids() {
    let p = small();
    let tables = world::generate(&p).unwrap();
    let schemas = world::table_schemas();
    let names: Vec<&str> = tables.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "prompts",
            "ift",
            "eft",
            "judge_prompts",
            "eval_prompts",
            "gold_pairs"
        ]
    );
    for ((name, batch), (schema_name, schema)) in tables.iter().zip(&schemas) {
        assert_eq!(name, schema_name);
        assert_eq!(&batch.schema(), schema, "{name}");
        let ids = batch.column_by_name("id").unwrap();
        let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
        assert!(
            ids.values()
                .iter()
                .enumerate()
                .all(|(i, &id)| id == i as i64),
            "{name}"
        );
    }
    let prompts = table(&tables, "prompts");
    let iters = prompts.column_by_name("iteration").unwrap();
    let iters = iters.as_any().downcast_ref::<Int32Array>().unwrap();
    let per_iter = |k: i32| iters.values().iter().filter(|&&i| i == k).count();
    assert_eq!(
        (per_iter(1), per_iter(2), prompts.num_rows()),
        (50, 50, 100)
    );
    let eft = table(&tables, "eft");
    assert_eq!(eft.num_rows(), 4000);
    let pointwise = str_col(&eft, "mode")
        .iter()
        .filter(|m| *m == "pointwise")
        .count();
    assert_eq!(pointwise, 2000);
}

#[test]
fn world_held_out_sets_are_disjoint_from_training() {
    let tables = world::generate(&small()).unwrap();
    let collect = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .flat_map(|n| str_col(&table(&tables, n), "prompt"))
            .collect()
    };
    let train = collect(&["prompts", "ift", "eft", "judge_prompts"]);
    let held_out = collect(&["eval_prompts", "gold_pairs"]);
    let all: BTreeSet<&String> = train.iter().chain(&held_out).collect();
    assert_eq!(all.len(), train.len() + held_out.len(), "a prompt repeats");
}

#[test]
fn world_gold_scorer_grades() {
    let prompt = format::prompt(TaskKind::Sort, "qwdbexyzab");
    assert_eq!(gold::answer(&prompt).unwrap(), "abbdeqwxyz");
    let score = |r: &str| gold::score(&prompt, r).unwrap();
    assert_eq!(score("abbdeqwxyz"), 1.0);
    assert_eq!(score(""), 0.0);
    assert_eq!(score("0123456789"), 0.0);
    assert!(score("ccffgghhii") < 0.15, "{}", score("ccffgghhii"));
    let one_swap = score("abbdqewxyz");
    assert!(one_swap > 0.85 && one_swap < 1.0, "{one_swap}");
    // Strictly worse with every additional wrong letter.
    let mut previous = 1.0;
    for k in 1..=10 {
        let response: String = "abbdeqwxyz"
            .chars()
            .enumerate()
            .map(|(i, c)| if i < k { '#' } else { c })
            .collect();
        let s = score(&response);
        assert!(s < previous, "{k} errors: {s} !< {previous}");
        previous = s;
    }
    assert_eq!(previous, 0.0);
    let desc = format::prompt(TaskKind::SortDesc, "bca");
    let rev = format::prompt(TaskKind::Reverse, "bca");
    assert_eq!(gold::answer(&desc).unwrap(), "cba");
    assert_eq!(gold::answer(&rev).unwrap(), "acb");
    let err = gold::answer("hello").unwrap_err();
    assert_eq!(scir::error::exit_code(&err), 2);
}

#[test]
fn world_score_levels() {
    assert_eq!(gold::level(1.0, 5), 5);
    assert_eq!(gold::level(0.99, 5), 4);
    assert_eq!(gold::level(0.0, 5), 1);
    assert_eq!(gold::level(0.3, 2), 1);
    let levels: Vec<u32> = (0..=100)
        .map(|i| gold::level(i as f64 / 100.0, 5))
        .collect();
    assert!(levels.windows(2).all(|w| w[0] <= w[1]), "{levels:?}");
}

#[test]
fn world_ift_noise_rate_holds() {
    let p = small();
    let ift = table(&world::generate(&p).unwrap(), "ift");
    let noisy = bools(&ift, "noisy");
    let rate = fraction(noisy.iter().copied());
    assert!((rate - p.ift_noise).abs() < 0.04, "{rate}");
    let prompts = str_col(&ift, "prompt");
    let responses = str_col(&ift, "response");
    for ((prompt, response), noisy) in prompts.iter().zip(&responses).zip(&noisy) {
        let exact = gold::score(prompt, response).unwrap() == 1.0;
        assert_eq!(exact, !noisy, "{prompt:?} {response:?}");
    }
}

#[test]
fn world_eft_label_noise_holds_in_both_modes() {
    let p = small();
    let eft = table(&world::generate(&p).unwrap(), "eft");
    let (modes, prompts) = (str_col(&eft, "mode"), str_col(&eft, "prompt"));
    let (a, b, labels) = (
        str_col(&eft, "response_a"),
        strs(&eft, "response_b"),
        str_col(&eft, "label"),
    );
    let noisy = bools(&eft, "noisy");
    let mut wrong = [Vec::new(), Vec::new()];
    let mut level_counts = [0usize; 6];
    let mut a_better = Vec::new();
    for i in 0..eft.num_rows() {
        let gold_a = gold::score(&prompts[i], &a[i]).unwrap();
        if modes[i] == "pointwise" {
            assert!(b[i].is_none());
            let true_level = gold::level(gold_a, p.score_levels);
            level_counts[true_level as usize] += 1;
            let is_wrong = format::score_token(true_level) != labels[i];
            assert_eq!(is_wrong, noisy[i]);
            wrong[0].push(is_wrong);
        } else {
            let gold_b = gold::score(&prompts[i], b[i].as_ref().unwrap()).unwrap();
            assert_ne!(gold_a, gold_b);
            a_better.push(gold_a > gold_b);
            let is_wrong = format::verdict(gold_a > gold_b) != labels[i];
            assert_eq!(is_wrong, noisy[i]);
            wrong[1].push(is_wrong);
        }
    }
    for flags in wrong {
        let rate = fraction(flags.into_iter());
        assert!((rate - p.eft_label_noise).abs() < 0.03, "{rate}");
    }
    // Every score level is taught, and A/B positions are balanced.
    assert!(
        level_counts[1..].iter().all(|&n| n > 40),
        "{level_counts:?}"
    );
    let share_a = fraction(a_better.into_iter());
    assert!((share_a - 0.5).abs() < 0.05, "{share_a}");
}

#[test]
fn world_gold_pairs_labels_are_gold() {
    let tables = world::generate(&small()).unwrap();
    let pairs = table(&tables, "gold_pairs");
    let (prompts, a, b) = (
        str_col(&pairs, "prompt"),
        str_col(&pairs, "response_a"),
        str_col(&pairs, "response_b"),
    );
    let (gold_a, gold_b, labels) = (
        floats(&pairs, "gold_a"),
        floats(&pairs, "gold_b"),
        str_col(&pairs, "label"),
    );
    for i in 0..pairs.num_rows() {
        assert_eq!(gold::score(&prompts[i], &a[i]).unwrap(), gold_a[i]);
        assert_eq!(gold::score(&prompts[i], &b[i]).unwrap(), gold_b[i]);
        assert_eq!(labels[i], format::verdict(gold_a[i] > gold_b[i]));
    }
}

#[test]
fn world_counts_change_only_their_table() {
    let a = world::generate(&small()).unwrap();
    let b = world::generate(&WorldParams {
        ift_examples: 10,
        iterations: 3,
        ..small()
    })
    .unwrap();
    for name in ["eval_prompts", "gold_pairs", "eft"] {
        assert_eq!(table(&a, name), table(&b, name), "{name}");
    }
    let (pa, pb) = (table(&a, "prompts"), table(&b, "prompts"));
    assert_eq!(
        pb.slice(0, pa.num_rows()),
        pa,
        "iterations 1-2 stay in place"
    );
}

#[test]
fn world_bad_params_are_user_errors_naming_the_field() {
    let cases: Vec<(WorldParams, &str)> = vec![
        (
            WorldParams {
                tasks: vec![],
                ..small()
            },
            "tasks",
        ),
        (
            WorldParams {
                alphabet_size: 27,
                ..small()
            },
            "alphabet_size",
        ),
        (
            WorldParams {
                min_len: 1,
                ..small()
            },
            "min_len",
        ),
        (
            WorldParams {
                max_len: 5,
                ..small()
            },
            "max_len",
        ),
        (
            WorldParams {
                iterations: 0,
                ..small()
            },
            "iterations",
        ),
        (
            WorldParams {
                prompts_per_iteration: 0,
                ..small()
            },
            "prompts_per_iteration",
        ),
        (
            WorldParams {
                ift_noise: 1.5,
                ..small()
            },
            "ift_noise",
        ),
        (
            WorldParams {
                eft_label_noise: f64::NAN,
                ..small()
            },
            "eft_label_noise",
        ),
        (
            WorldParams {
                judge_edits: 0,
                ..small()
            },
            "judge_edits",
        ),
        (
            WorldParams {
                score_levels: 10,
                ..small()
            },
            "score_levels",
        ),
        (
            WorldParams {
                alphabet_size: 2,
                min_len: 2,
                max_len: 3,
                ..small()
            },
            "alphabet_size",
        ),
    ];
    for (p, field) in cases {
        let err = world::generate(&p).unwrap_err();
        assert_eq!(scir::error::exit_code(&err), 2, "{field}: {err:#}");
        assert!(
            format!("{err}").contains(&format!("`{field}`")),
            "{field}: {err}"
        );
    }
    let unknown = serde_json::from_str::<WorldParams>(r#"{"seed": 1, "sead": 2}"#);
    assert!(unknown.unwrap_err().to_string().contains("sead"));
    let partial: WorldParams = serde_json::from_str(r#"{"tasks": ["sort", "sort_desc"]}"#).unwrap();
    assert_eq!(partial.tasks, [TaskKind::Sort, TaskKind::SortDesc]);
    assert_eq!(partial.alphabet_size, WorldParams::default().alphabet_size);
}

#[test]
fn world_tiny_alphabet_still_generates_distinct_prompts() {
    let p = WorldParams {
        alphabet_size: 3,
        min_len: 2,
        max_len: 6,
        tasks: vec![TaskKind::Sort, TaskKind::SortDesc, TaskKind::Reverse],
        iterations: 1,
        prompts_per_iteration: 20,
        ift_examples: 40,
        eft_pointwise: 40,
        eft_pairwise: 40,
        eval_prompts: 20,
        gold_pairs: 20,
        ..WorldParams::default()
    };
    let tables = world::generate(&p).unwrap();
    let prompts: Vec<String> = tables
        .iter()
        .flat_map(|(_, b)| str_col(b, "prompt"))
        .collect();
    assert_eq!(prompts.len(), 180);
    assert_eq!(prompts.iter().collect::<BTreeSet<_>>().len(), 180);
}

/// Every string the world renders for a model, with its target token.
fn rendered(tables: &[(String, RecordBatch)]) -> Vec<String> {
    let mut out = Vec::new();
    let ift = table(tables, "ift");
    for (prompt, response) in str_col(&ift, "prompt")
        .iter()
        .zip(str_col(&ift, "response"))
    {
        out.push(format!(
            "{}{}",
            format::instruction(prompt, &response),
            format::EOS
        ));
    }
    let eft = table(tables, "eft");
    let (prompts, a, b, labels) = (
        str_col(&eft, "prompt"),
        str_col(&eft, "response_a"),
        strs(&eft, "response_b"),
        str_col(&eft, "label"),
    );
    for i in 0..eft.num_rows() {
        let context = match &b[i] {
            None => format::judge_pointwise(&prompts[i], &a[i]),
            Some(b) => format::judge_pairwise(&prompts[i], &a[i], b),
        };
        out.push(format!("{context}{}{}", labels[i], format::EOS));
    }
    out
}

#[test]
fn world_tokenizer_covers_every_rendered_string_and_round_trips() {
    let tok = world::tokenizer();
    let unk = tok.token_to_id(format::UNK).unwrap();
    let bos = tok.token_to_id(format::BOS).unwrap();
    let eos = tok.token_to_id(format::EOS).unwrap();
    let p = WorldParams {
        tasks: vec![TaskKind::Sort, TaskKind::SortDesc, TaskKind::Reverse],
        ..small()
    };
    let texts = rendered(&world::generate(&p).unwrap());
    for text in texts.iter().take(3000) {
        let enc = tok.encode(text.as_str(), true).unwrap();
        let ids = enc.get_ids();
        assert!(!ids.contains(&unk), "unknown token in {text:?}");
        assert_eq!((ids[0], *ids.last().unwrap()), (bos, eos), "{text:?}");
        // One token per character, plus <bos>; the <eos> text is one token.
        assert_eq!(
            ids.len(),
            text.chars().count() - format::EOS.len() + 2,
            "{text:?}"
        );
        let decoded = tok.decode(ids, true).unwrap();
        assert_eq!(format!("{decoded}{}", format::EOS), *text);
    }
    for t in format::score_tokens(9)
        .iter()
        .chain([format::VERDICT_A.to_string(), format::VERDICT_B.to_string()].iter())
    {
        assert!(tok.token_to_id(t).is_some(), "{t}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    tok.save(&path, true).unwrap();
    let loaded = tokenizers::Tokenizer::from_file(&path).unwrap();
    let sample = &texts[0];
    assert_eq!(
        loaded.encode(sample.as_str(), true).unwrap().get_ids(),
        tok.encode(sample.as_str(), true).unwrap().get_ids()
    );
    assert_eq!(loaded.get_vocab(true), tok.get_vocab(true));
}

#[test]
fn world_formats_are_distinct_contexts() {
    let prompt = format::prompt(TaskKind::Sort, "cab");
    assert_eq!(prompt, "sort: cab\n");
    assert_eq!(format::parse_prompt(&prompt), Some((TaskKind::Sort, "cab")));
    assert_eq!(format::parse_prompt("sort: Cab\n"), None);
    let point = format::judge_pointwise(&prompt, "abc");
    let pair = format::judge_pairwise(&prompt, "abc", "acb");
    assert_eq!(point, "judge\nsort: cab\nabc\nscore: ");
    assert_eq!(pair, "compare\nsort: cab\nA: abc\nB: acb\nbetter: ");
    assert!(!point.starts_with(&prompt) && !pair.starts_with(&prompt));
}

#[test]
fn world_tokenizer_json_is_byte_stable() {
    // Checkpoints carry tokenizer.json and are content-addressed: same bytes every time.
    let a = world::tokenizer().to_string(true).unwrap();
    let b = world::tokenizer().to_string(true).unwrap();
    assert_eq!(a, b);
    let reloaded: tokenizers::Tokenizer = a.parse().unwrap();
    assert_eq!(reloaded.to_string(true).unwrap(), a);
}

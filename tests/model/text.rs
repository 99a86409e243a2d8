//! Text: the TRL seam, chat templates, and the CLI's JSON output.

use std::process::Command;

use scir::model::Message;

use super::common::{tiny, user_msg};

#[test]
fn prompt_gets_bos_response_does_not_eos_on_request() {
    let m = tiny(1);
    let p = m.text.encode_prompt("ab").unwrap();
    let r = m.text.encode_response("ab", false).unwrap();
    let r_eos = m.text.encode_response("ab", true).unwrap();
    assert_eq!(p, [0, 3, 4]);
    assert_eq!(r, [3, 4]);
    assert_eq!(r_eos, [3, 4, 1]);
    assert_eq!(m.text.decode(&r_eos, true).unwrap(), "ab");
}

#[test]
fn chat_template_renders_like_transformers() {
    let m = tiny(1);
    let msgs = [
        Message::user("  hi there "),
        Message::assistant("yo"),
        Message::user("ok?"),
    ];
    let s = m.text.render_chat(&msgs, true).unwrap();
    assert_eq!(s, "<s>user: hi there\nassistant: yo\nuser: ok?\nassistant:");
    let ids = m.text.encode_chat_prompt(&msgs[..1]).unwrap();
    assert_eq!(
        ids.iter().filter(|&&i| i == 0).count(),
        1,
        "exactly one BOS: {ids:?}"
    );
    let bad = m.text.render_chat(
        &[Message {
            role: "tool".into(),
            content: "x".into(),
        }],
        false,
    );
    assert!(user_msg(bad.unwrap_err()).contains("bad role tool"));
}

fn scir(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_scir"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn cli_info_logprobs_generate_print_json() {
    let dir = tempfile::tempdir().unwrap();
    tiny(2).save(dir.path()).unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = scir(&["model", "info", "--model", d, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["architecture"], "LlamaForCausalLM");
    assert_eq!(v["dtype"], "f32");
    let (code, out, err) = scir(&[
        "model",
        "logprobs",
        "--model",
        d,
        "--prompt",
        "ab",
        "--response",
        "cd",
        "--eos",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["tokens"], 3);
    assert!(v["logprob"].as_f64().unwrap() < 0.0);
    let (code, out, err) = scir(&[
        "model",
        "generate",
        "--model",
        d,
        "--prompt",
        "ab",
        "--max-new-tokens",
        "5",
        "--greedy",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["token_ids"].as_array().unwrap().len() <= 5);
    assert!(v["text"].is_string());
    let (code, _, err) = scir(&["model", "info", "--model", "/nonexistent/dir", "--json"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/dir"), "{err}");
}

/// Sampled generation gives the same ids whatever the number of compute threads.
#[test]
fn sampling_is_independent_of_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    tiny(3).save(dir.path()).unwrap();
    let d = dir.path().to_str().unwrap();
    let args = [
        "model",
        "generate",
        "--model",
        d,
        "--prompt",
        "once",
        "--max-new-tokens",
        "24",
        "--temperature",
        "1.5",
        "--top-p",
        "0.9",
        "--seed",
        "42",
        "--json",
    ];
    let run = |threads: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_scir"))
            .args(args)
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let one = run("1");
    assert_eq!(one, run("3"));
    let v: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(v["token_ids"].as_array().unwrap().len(), 24);
}

#[test]
fn single_token_ids_for_verdicts() {
    let m = tiny(1);
    assert_eq!(m.text.single_token_id("a").unwrap(), 3);
    assert!(user_msg(m.text.single_token_id("ab").unwrap_err()).contains("2 tokens"));
}

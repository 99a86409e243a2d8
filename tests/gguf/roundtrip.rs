//! A crafted GGUF of a random scir model imports back to the same model: F32 exactly (so
//! names, the Q/K un-permutation, tying and the config are right), quantised types within
//! their quantisation error and equal to candle's dequantisation, and the tokenizer built
//! from the metadata encodes like the committed one.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use scir::model::batch::{Batch, Padding};
use scir::model::gguf::import;
use scir::model::{Adapters, Message};

use super::craft::{CHAT_TEMPLATE, craft, fixture_tokenizer_dir, load, tiny_llama};

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn f32_import_is_exact_and_untied_output_kept() {
    let m = tiny_llama(false, 7);
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    craft(&gguf, &m, GgmlDType::F32, |_| {});
    let out = tmp.path().join("hf");
    let report = import(&gguf, &out).unwrap();
    assert_eq!(report.tensors, m.tensors().len());
    let back = load(&out);
    assert_eq!(back.config(), m.config());
    assert!(back.tensors().iter().any(|(n, _)| n == "lm_head.weight"));
    for ((n1, t1), (n2, t2)) in m.tensors().iter().zip(back.tensors()) {
        assert_eq!(n1, n2);
        assert_eq!(max_abs_diff(t1, t2), 0.0, "{n1}");
    }
    // Same logits on a batch (the decoder really sees the same weights).
    let batch = Batch::padded(&[vec![1, 5, 9, 40, 41], vec![1, 77]], 0, Padding::Left).unwrap();
    let a = m.decoder.forward(&batch, None, Adapters::Off).unwrap();
    let b = back.decoder.forward(&batch, None, Adapters::Off).unwrap();
    assert_eq!(max_abs_diff(&a, &b), 0.0);
}

#[test]
fn tokenizer_and_chat_template_come_from_the_metadata() {
    let m = tiny_llama(true, 3);
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    craft(&gguf, &m, GgmlDType::F32, |_| {});
    let out = tmp.path().join("hf");
    import(&gguf, &out).unwrap();
    let back = load(&out);
    assert!(back.config().tie_word_embeddings);
    let reference =
        tokenizers::Tokenizer::from_file(fixture_tokenizer_dir().join("tokenizer.json")).unwrap();
    for text in [
        "hello world",
        "  spaced  out\n\nlines",
        "Zürich 2024 — ok?",
        "</s>x<s>",
    ] {
        let want = reference.encode(text, true).unwrap().get_ids().to_vec();
        assert_eq!(back.text.encode_prompt(text).unwrap(), want, "{text:?}");
        let want = reference.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(
            back.text.encode_response(text, false).unwrap(),
            want,
            "{text:?}"
        );
        assert_eq!(back.text.decode(&want, false).unwrap(), text);
    }
    assert_eq!(back.text.eos_id(), Some(2));
    assert_eq!(back.text.bos_token(), Some("<s>"));
    let tc = back.text.tokenizer_config();
    assert_eq!(tc["chat_template"], CHAT_TEMPLATE);
    assert_eq!(tc["pad_token"], "<pad>");
    let rendered = back.text.render_chat(&[Message::user("hi")], true).unwrap();
    assert_eq!(
        rendered,
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn quantised_types_dequantise() {
    let m = tiny_llama(true, 11);
    let c = m.config().clone();
    for (dtype, tol) in [
        (GgmlDType::F16, 1e-3),
        (GgmlDType::Q8_0, 2e-2),
        (GgmlDType::Q4_1, 0.2),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let gguf = tmp.path().join("q.gguf");
        // Norms stay f32 (llama.cpp never quantises 1-D tensors).
        let mut meta = super::craft::model_metadata(&m);
        meta.extend(super::craft::tokenizer_metadata());
        let tensors = super::craft::gguf_tensors(&m, |n| {
            if n.ends_with("norm.weight") {
                GgmlDType::F32
            } else {
                dtype
            }
        });
        super::craft::write_gguf(&gguf, &meta, &tensors);
        let out = tmp.path().join("hf");
        let report = import(&gguf, &out).unwrap();
        assert_eq!(
            report.source_types[&format!("{dtype:?}")],
            7 * c.num_layers + 1
        );
        let back = load(&out);
        for ((name, orig), (_, got)) in m.tensors().iter().zip(back.tensors()) {
            // Within quantisation error of the original weights …
            let err = max_abs_diff(orig, got);
            let scale = max_abs_diff(orig, &orig.zeros_like().unwrap());
            assert!(
                err <= tol * scale,
                "{dtype:?} {name}: error {err} vs scale {scale}"
            );
            // … and exactly what candle's dequantisation of the stored tensor gives.
            if name.contains("proj") && !name.contains("q_proj") && !name.contains("k_proj") {
                let q = QTensor::quantize(orig, dtype).unwrap();
                let want = q.dequantize(&Device::Cpu).unwrap();
                assert_eq!(max_abs_diff(&want, got), 0.0, "{dtype:?} {name}");
            }
        }
    }
}

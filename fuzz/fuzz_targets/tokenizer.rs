//! Any bytes as `tokenizer.json`, `tokenizer_config.json` and `chat_template.jinja` (the
//! input's three parts, split at `scratch::SEPARATOR`; an empty part is no file): loading
//! them (`model::tokenizer::Text::load`), rendering the chat template and encoding and
//! decoding through them must return Ok or an error, never panic, abort or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scir_fuzz::model::Message;
use scir_fuzz::model::config::ModelConfig;
use scir_fuzz::model::tokenizer::Text;
use scir_fuzz::scratch;

const FILES: [&str; 3] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
];

fuzz_target!(|data: &[u8]| {
    scratch::let_scir_catch_panics();
    let dir = scratch::dir("tokenizer");
    for (name, part) in FILES.iter().zip(scratch::parts(data, FILES.len())) {
        if !part.is_empty() {
            scratch::write(&dir, name, part);
        }
    }
    let cfg = ModelConfig::from_json(&serde_json::json!({
        "model_type": "llama", "vocab_size": 512, "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "bos_token_id": 1, "eos_token_id": 2,
    }))
    .expect("a valid fixed config");
    let Ok(text) = Text::load(&dir, &cfg) else {
        return;
    };
    let messages = [
        Message::user("sort: qwdbe"),
        Message::assistant("bdeqw"),
        Message::user("Which is better, [[A]] or [[B]]?"),
    ];
    let _ = text.render_chat(&messages, true);
    if let Ok(ids) = text.encode_chat_prompt(&messages) {
        let _ = text.decode(&ids, false);
    }
    if let Ok(ids) = text.encode_response("bdeqw <|im_end|>", true) {
        let _ = text.decode(&ids, true);
    }
    let _ = text.single_token_id("A");
});

//! Any bytes as a judge template (`score-grm: { template: FILE }`): compiling it
//! (`judge::JudgeTemplate::new`), checking what it shows and rendering pairwise and pointwise
//! prompts must return Ok or an error, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scir_fuzz::judge::JudgeTemplate;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(template) = JudgeTemplate::new(source, "judge.txt") else {
        return;
    };
    for pairwise in [true, false] {
        let _ = template.check_shows_inputs(pairwise);
    }
    let _ = template.pairwise("sort: qwdbe", "bdeqw", "bdqew");
    let _ = template.pointwise("sort: qwdbe", "bdeqw");
});

//! Bit-identical save → resume on a toy problem, optimizer state files, data order.

use candle_core::{Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use scir::model::optim::{AdamW, AdamWParams, clip_grad_norm};
use scir::model::schedule::{LrSchedule, ScheduleKind};
use scir::model::train_state::{TrainerState, epoch_order, load_checkpoint, save_checkpoint};

use super::{host2, toy_loss};

/// Train `w` on the toy problem for steps `from..to`, drawing batches of 3 rows from the
/// epoch order and a random extra scaling from `rng` (to prove the RNG is restored too).
fn run_toy(w: &Var, opt: &mut AdamW, state: &mut TrainerState, rng: &mut ChaCha8Rng, steps: u64) {
    const N: usize = 10;
    const BATCH: usize = 3;
    let sched = LrSchedule::new(ScheduleKind::Cosine, 0.05, 2, 12).unwrap();
    for _ in 0..steps {
        let order = epoch_order(N, state.seed, state.epoch);
        let start = state.data_position as usize;
        let rows: Vec<usize> = order[start..(start + BATCH).min(N)].to_vec();
        state.data_position += rows.len() as u64;
        if state.data_position as usize >= N {
            state.epoch += 1;
            state.data_position = 0;
        }
        let noise = 1.0 + (rng.next_u32() % 100) as f64 / 1000.0;
        let loss = (toy_loss(w, &rows) * noise).unwrap();
        let mut grads = loss.backward().unwrap();
        clip_grad_norm(&mut grads, std::slice::from_ref(w), 0.5).unwrap();
        opt.set_lr(sched.lr(opt.step_count()));
        opt.step(&grads).unwrap();
        state.global_step = opt.step_count();
    }
    state.rng = scir::model::train_state::RngState::capture(rng);
}

fn fresh_toy() -> (Var, AdamW, TrainerState, ChaCha8Rng) {
    let w = Var::new(&[[0.2f32, -0.1, 0.4]], &Device::Cpu).unwrap();
    let params = AdamWParams {
        lr: 0.05,
        ..AdamWParams::default()
    };
    let opt = AdamW::new(vec![("w".into(), w.clone())], params).unwrap();
    let rng = ChaCha8Rng::seed_from_u64(7);
    let state = TrainerState::start(42, &rng, params);
    (w, opt, state, rng)
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

#[test]
fn save_and_resume_is_bit_identical_on_a_toy_problem() {
    // Straight run of 12 steps.
    let (w, mut opt, mut state, mut rng) = fresh_toy();
    run_toy(&w, &mut opt, &mut state, &mut rng, 12);
    let want = bits(w.as_tensor());
    // 5 steps, save, throw everything away, resume from disk, 7 more steps.
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("checkpoint");
    let (w1, mut opt1, mut state1, mut rng1) = fresh_toy();
    run_toy(&w1, &mut opt1, &mut state1, &mut rng1, 5);
    save_checkpoint(&ckpt, &state1, &opt1, &[("w".into(), w1.clone())]).unwrap();
    save_checkpoint(&ckpt, &state1, &opt1, &[("w".into(), w1.clone())]).unwrap(); // overwrite is fine
    drop((w1, opt1, state1, rng1));
    let (w2, mut opt2, _, _) = fresh_toy();
    let mut state2 = load_checkpoint(&ckpt, &mut opt2, &[("w".into(), w2.clone())]).unwrap();
    let mut rng2 = state2.rng.restore().unwrap();
    assert_eq!(state2.global_step, 5);
    run_toy(&w2, &mut opt2, &mut state2, &mut rng2, 7);
    assert_eq!(
        bits(w2.as_tensor()),
        want,
        "resumed run differs from the straight run"
    );
    assert_eq!(state2, state);
    // The straight run differs from the initial weights (the test can fail).
    assert_ne!(
        want,
        bits(&Tensor::new(&[[0.2f32, -0.1, 0.4]], &Device::Cpu).unwrap())
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("checkpoint")],
        "no staging leftovers"
    );
}

#[test]
fn loading_a_mismatched_checkpoint_fails_and_changes_nothing() {
    let (w, mut opt, mut state, mut rng) = fresh_toy();
    run_toy(&w, &mut opt, &mut state, &mut rng, 2);
    let dir = tempfile::tempdir().unwrap();
    save_checkpoint(dir.path(), &state, &opt, &[("w".into(), w.clone())]).unwrap();
    let other = Var::new(&[[1.0f32, 2.0]], &Device::Cpu).unwrap();
    let mut opt2 = AdamW::new(vec![("w".into(), other.clone())], AdamWParams::default()).unwrap();
    let err = load_checkpoint(dir.path(), &mut opt2, &[("w".into(), other.clone())]).unwrap_err();
    assert!(format!("{err:#}").contains("params.safetensors"), "{err:#}");
    assert_eq!(host2(other.as_tensor()), vec![vec![1.0, 2.0]]);
    assert_eq!(opt2.step_count(), 0);
}

#[test]
fn optimizer_state_roundtrips_exactly() {
    let (w, mut opt, mut state, mut rng) = fresh_toy();
    run_toy(&w, &mut opt, &mut state, &mut rng, 3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("opt.safetensors");
    opt.save(&path).unwrap();
    let mut opt2 = AdamW::new(vec![("w".into(), w.clone())], AdamWParams::default()).unwrap();
    opt2.load(&path).unwrap();
    assert_eq!(opt2.step_count(), 3);
    opt2.save(&dir.path().join("again.safetensors")).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(dir.path().join("again.safetensors")).unwrap()
    );
    let mut wrong = AdamW::new(vec![("v".into(), w.clone())], AdamWParams::default()).unwrap();
    assert!(wrong.load(&path).is_err(), "names must match");
}

#[test]
fn epoch_order_is_a_seeded_permutation() {
    let a = epoch_order(50, 1, 0);
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    assert_eq!(a, epoch_order(50, 1, 0));
    assert_ne!(a, epoch_order(50, 1, 1));
    assert_ne!(a, epoch_order(50, 2, 0));
}

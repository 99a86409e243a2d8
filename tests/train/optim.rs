//! AdamW against torch, schedules against transformers' formulas, gradient
//! accumulation and clipping.

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use scir::model::optim::{AdamW, AdamWParams, GradAccumulator, clip_grad_norm, grad_norm};
use scir::model::schedule::{LrSchedule, ScheduleKind};

use super::{assert_close, host1, toy_loss};

/// Reference numbers from torch 2.15 (`foreach=False`, float64):
/// ```python
/// p1 = torch.tensor([[0.5, -1.25, 2.0], [0.1, 0.0, -0.3]], dtype=torch.float64, requires_grad=True)
/// p2 = torch.tensor([3.0, -2.0], dtype=torch.float64, requires_grad=True)
/// opt = torch.optim.AdamW([p1, p2], lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1, foreach=False)
/// for t in range(1, 5):
///     opt.zero_grad(); (torch.sin(p1 * t).sum() + (p2 ** 3).sum() / 3 * t).backward(); opt.step()
/// ```
#[test]
fn adamw_matches_torch() {
    let dev = Device::Cpu;
    let p1 = Var::new(&[[0.5f64, -1.25, 2.0], [0.1, 0.0, -0.3]], &dev).unwrap();
    let p2 = Var::new(&[3.0f64, -2.0], &dev).unwrap();
    let params = AdamWParams {
        lr: 0.05,
        beta1: 0.8,
        beta2: 0.95,
        eps: 1e-6,
        weight_decay: 0.1,
    };
    let mut opt = AdamW::new(
        vec![("p1".into(), p1.clone()), ("p2".into(), p2.clone())],
        params,
    )
    .unwrap();
    for t in 1..5 {
        let t = t as f64;
        let loss = ((p1.as_tensor() * t)
            .unwrap()
            .sin()
            .unwrap()
            .sum_all()
            .unwrap()
            + (p2.as_tensor().powf(3.0).unwrap().sum_all().unwrap() * (t / 3.0)).unwrap())
        .unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
    }
    let want1 = [
        0.2929316941060812,
        -1.173410293767916,
        2.0360580606497454,
        -0.09794893102236088,
        -0.19656586478750254,
        -0.4647797486115276,
    ];
    assert_close(&host1(p1.as_tensor()), &want1, 1e-12);
    assert_close(
        &host1(p2.as_tensor()),
        &[2.74369228062982, -2.1554765635227144],
        1e-12,
    );
    assert_eq!(opt.step_count(), 4);
}

#[test]
fn cosine_schedule_matches_transformers() {
    // transformers.get_cosine_schedule_with_warmup(opt, 2, 10), lr 1: steps 0..=10.
    let want = [
        0.0,
        0.5,
        1.0,
        0.9619397662556434,
        0.8535533905932737, // ½(1 + cos(π/4))
        0.6913417161825449,
        0.5,
        0.30865828381745514,
        0.14644660940672627,
        0.03806023374435663,
        0.0,
    ];
    let s = LrSchedule::new(ScheduleKind::Cosine, 1.0, 2, 10).unwrap();
    let got: Vec<f64> = (0..=10).map(|i| s.factor(i)).collect();
    assert_close(&got, &want, 1e-15);
    assert_eq!(s.factor(11), 0.0, "past the end stays at 0");
    let s = LrSchedule::new(ScheduleKind::Cosine, 3e-4, 2, 10).unwrap();
    assert!((s.lr(6) - 1.5e-4).abs() < 1e-18);
}

#[test]
fn other_schedules_by_hand() {
    let lin = LrSchedule::new(ScheduleKind::Linear, 1.0, 2, 10).unwrap();
    assert_eq!(
        [
            lin.factor(0),
            lin.factor(1),
            lin.factor(2),
            lin.factor(6),
            lin.factor(10)
        ],
        [0.0, 0.5, 1.0, 0.5, 0.0]
    );
    let cw = LrSchedule::new(ScheduleKind::ConstantWithWarmup, 1.0, 4, 10).unwrap();
    assert_eq!(
        [cw.factor(0), cw.factor(1), cw.factor(4), cw.factor(9)],
        [0.0, 0.25, 1.0, 1.0]
    );
    let c = LrSchedule::new(ScheduleKind::Constant, 2.0, 0, 10).unwrap();
    assert_eq!([c.lr(0), c.lr(10)], [2.0, 2.0]);
    // No warmup: the first step already uses the full rate.
    let nw = LrSchedule::new(ScheduleKind::Cosine, 1.0, 0, 4).unwrap();
    assert_eq!(nw.factor(0), 1.0);
    assert!(LrSchedule::new(ScheduleKind::Cosine, 1.0, 11, 10).is_err());
    assert!(LrSchedule::new(ScheduleKind::Cosine, f64::NAN, 0, 10).is_err());
}

#[test]
fn accumulated_micro_batches_equal_the_full_batch() {
    let w = Var::new(&[[0.2f32, -0.1, 0.4]], &Device::Cpu).unwrap();
    let full = toy_loss(&w, &[0, 1, 2, 3]).backward().unwrap();
    let mut acc = GradAccumulator::new(vec![w.clone()]);
    acc.add(&toy_loss(&w, &[0, 1]).backward().unwrap()).unwrap();
    acc.add(&toy_loss(&w, &[2, 3]).backward().unwrap()).unwrap();
    assert_eq!(acc.micro_batches(), 2);
    let summed = acc.finish(0.5).unwrap();
    assert_close(
        &host1(summed.get(w.as_tensor()).unwrap()),
        &host1(full.get(w.as_tensor()).unwrap()),
        1e-6,
    );
    assert_eq!(acc.micro_batches(), 0);
}

#[test]
fn clipping_scales_to_the_max_norm_and_reports_the_norm() {
    let a = Var::new(&[3.0f32], &Device::Cpu).unwrap();
    let b = Var::new(&[[0.0f32, 4.0]], &Device::Cpu).unwrap();
    let vars = vec![a.clone(), b.clone()];
    let store = || {
        let mut g = GradStore::default();
        g.insert(a.as_tensor(), Tensor::new(&[3.0f32], &Device::Cpu).unwrap());
        g.insert(
            b.as_tensor(),
            Tensor::new(&[[0.0f32, 4.0]], &Device::Cpu).unwrap(),
        );
        g
    };
    let mut g = store();
    let norm = clip_grad_norm(&mut g, &vars, 1.0).unwrap();
    assert!((norm - 5.0).abs() < 1e-12);
    assert!((grad_norm(&g, &vars).unwrap() - 5.0 / (5.0 + 1e-6)).abs() < 1e-6);
    assert_close(&host1(g.get(a.as_tensor()).unwrap()), &[0.6], 1e-6);
    let mut g = store();
    assert!((clip_grad_norm(&mut g, &vars, 10.0).unwrap() - 5.0).abs() < 1e-12);
    assert_eq!(
        host1(g.get(b.as_tensor()).unwrap()),
        vec![0.0, 4.0],
        "below the max: unchanged"
    );
}

/// The Stepper averages micro-batches, reports the pre-clip norm and the scheduled lr,
/// and refuses a non-finite gradient without touching parameters or optimizer state.
#[test]
fn stepper_averages_clips_schedules_and_refuses_nan() {
    use scir::model::trainer::Stepper;
    let w = Var::new(&[[0.2f32, -0.1, 0.4]], &Device::Cpu).unwrap();
    let sched = LrSchedule::new(ScheduleKind::Linear, 0.1, 1, 4).unwrap();
    let params = AdamWParams {
        lr: 0.1,
        ..AdamWParams::default()
    };
    let mut st = Stepper::new(vec![("w".into(), w.clone())], params, sched, Some(1e-3)).unwrap();
    let full = toy_loss(&w, &[0, 1, 2, 3]).backward().unwrap();
    let want_norm = scir::model::optim::grad_norm(&full, std::slice::from_ref(&w)).unwrap();
    st.accumulate(&toy_loss(&w, &[0, 1]).backward().unwrap())
        .unwrap();
    st.accumulate(&toy_loss(&w, &[2, 3]).backward().unwrap())
        .unwrap();
    let info = st.step().unwrap();
    assert!(
        (info.grad_norm - want_norm).abs() < 1e-6,
        "{info:?} vs {want_norm}"
    );
    assert_eq!(
        (info.step, info.lr),
        (1, 0.0),
        "warmup: the first update has lr 0"
    );
    st.accumulate(&toy_loss(&w, &[0, 1]).backward().unwrap())
        .unwrap();
    let info = st.step().unwrap();
    assert_eq!((info.step, info.lr), (2, 0.1));
    let before = host1(w.as_tensor());
    let nan = (toy_loss(&w, &[0]) * f64::NAN).unwrap();
    st.accumulate(&nan.backward().unwrap()).unwrap();
    let err = st.step().unwrap_err();
    assert!(err.to_string().contains("diverged"), "{err}");
    assert_eq!(host1(w.as_tensor()), before);
    assert_eq!(st.optimizer().step_count(), 2);
    assert!(st.step().is_err(), "no micro-batch accumulated");
}

/// The same run in f32 against torch's f32 numbers (moments in the parameter dtype, as
/// torch keeps them).
#[test]
fn adamw_matches_torch_in_f32() {
    let dev = Device::Cpu;
    let p1 = Var::new(&[[0.5f32, -1.25, 2.0], [0.1, 0.0, -0.3]], &dev).unwrap();
    let p2 = Var::new(&[3.0f32, -2.0], &dev).unwrap();
    let params = AdamWParams {
        lr: 0.05,
        beta1: 0.8,
        beta2: 0.95,
        eps: 1e-6,
        weight_decay: 0.1,
    };
    let mut opt = AdamW::new(
        vec![("p1".into(), p1.clone()), ("p2".into(), p2.clone())],
        params,
    )
    .unwrap();
    for t in 1..5 {
        let t = t as f64;
        let loss = ((p1.as_tensor() * t)
            .unwrap()
            .sin()
            .unwrap()
            .sum_all()
            .unwrap()
            + (p2.as_tensor().powf(3.0).unwrap().sum_all().unwrap() * (t / 3.0)).unwrap())
        .unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
    }
    let mut got = host1(p1.as_tensor());
    got.extend(host1(p2.as_tensor()));
    let want = [
        0.2929316759109497,
        -1.173410177230835,
        2.036058187484741,
        -0.09794893115758896,
        -0.1965658813714981,
        -0.4647797644138336,
        2.743692636489868,
        -2.1554763317108154,
    ];
    assert_close(&got, &want, 2e-6);
}

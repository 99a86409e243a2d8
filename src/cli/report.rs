//! `scir report`: the per-arm, per-iteration eval table (logic in [`crate::report`]).

use super::StoreArgs;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

const AFTER_HELP: &str = "\
Reads the public `eval` table (written by the eval stage: iteration 0 = M0,
iteration k = after k iterations; one row per arm and iteration) and prints
the summary columns. It also rebuilds artifacts/report/: report.md and PNG
charts of gold score, win rate, judge accuracy and consistency rate (one line
per arm), and index.html, the same in one self-contained page with a pair
browser (each generated pair's responses, p_irm, p_grm, label and gold;
filters in the URL, e.g. index.html#arm=srlm&iter=2&wrong=1). With --json it
prints every metric:
  { \"arms\": [..], \"metrics\": [..], \"summary\": [..],
    \"rows\": [ { \"arm\", \"iteration\", \"values\": { metric: number|null } } ] }

Metrics (null/- = nothing to average):
  gold_{greedy,sampled}      mean gold score on held-out prompts, in [0, 1]
  exact_{greedy,sampled}     fraction of exact answers
  win_rate_{greedy,sampled}  gold win rate vs M0, ties count 1/2
  lc_win_rate_*              length-controlled win rate vs M0 (AlpacaEval 2.0's
                             logistic model, at equal length)
  sampled_{grm,irm}_acc      judge / IRM accuracy on pairs of the model's own
                             sampled responses (gold-labelled, held-out prompts)
  length_*, finished_*       mean response tokens, fraction ending with EOS
  irm_acc, grm_acc           reward-model accuracy on held-out gold pairs
  rm_acc, sampled_rm_acc     an external reward model's accuracy (gold pairs; the
                             model's own sampled pairs), where eval binds one
  grm_{pairwise,pairwise_ab,pointwise}_acc, grm_flip_rate
  consistency_rate           fraction of gold pairs where IRM and GRM agree
  consistent_acc             accuracy of the agreed label on those pairs
  inconsistent_{irm,grm}_acc each model's accuracy on the other pairs

With --seeds DIR DIR ... it reads the `eval` table of each artifacts
directory (runs of one pipeline with different --seed), and prints in
markdown the mean ± sd over seeds per arm and iteration, and the paired
differences (arm vs arm at the last iteration, each arm's last iteration vs
M0) with whether each is larger than the seed spread. It writes nothing.

Examples:
  scir report
  scir run pipeline.yaml --seeds 1,2,3 --artifacts runs   (writes runs/seeds.md too)
  scir report --seeds runs/seed-1 runs/seed-2 runs/seed-3
  scir report --json | jq '.rows[] | {arm, iteration, g: .values.gold_sampled}'
  scir sql \"SELECT arm, iteration, value FROM eval WHERE metric = 'irm_acc' ORDER BY 1, 2\"";

/// Print the eval results per arm and iteration, and rebuild artifacts/report/.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct ReportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print every metric as JSON instead of the summary table.
    #[arg(long)]
    pub json: bool,
    /// Combine the runs in these artifacts directories (one per seed) instead.
    #[arg(long, value_name = "DIR", num_args = 1.., conflicts_with = "artifacts")]
    pub seeds: Vec<PathBuf>,
}

pub fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    if !args.seeds.is_empty() {
        return seeds(args);
    }
    let report = crate::report::load(&args.store.artifacts)?;
    let path = crate::report::write_report(&args.store.artifacts, &report)?;
    let text = if args.json {
        report.json()?
    } else {
        report.text()
    };
    print(&text)?;
    if !args.json {
        eprintln!("report: {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn seeds(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let runs = args
        .seeds
        .iter()
        .map(|dir| Ok((dir.display().to_string(), crate::report::load(dir)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let combined = crate::report::seeds::combine(&runs)?;
    print(&if args.json {
        combined.json()?
    } else {
        combined.markdown()
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Write to stdout; a closed pipe (`| head`) is not an error.
fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {}
        result => result?,
    }
    Ok(())
}

//! Input references as written in `pipeline.yaml`.
//!
//! ```text
//! STAGE            the same iteration of an each_iteration stage, else STAGE's single task
//! STAGE@k          the same iteration (explicit)
//! STAGE@k-N        N iterations back (N ≥ 1)
//! STAGE@N          iteration N (0 for a stage that runs once)
//! model@k-N        the model chain: model@0 = models.start, model@j = models.step@j,
//! model@N            model@j for j < 0 = models.initial
//! model@initial    models.initial
//! model@irm_ref    the IRM reference of iteration k: models.irm_reference (per arm) says
//!                  model@initial, model@k-2 or model@k-1
//! model@judge      the judge (GRM) of iteration k: models.judge (per arm) says model@k-1
//!                  (the model being improved, default), model@0 (M0, frozen) or
//!                  model@reward_model
//! model@reward_model  models.reward_model: an external reward model (a run-once stage)
//! ```

use super::MODEL;

/// Which iteration a reference points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// No `@`: the same iteration, or the single task of a run-once stage.
    Same,
    /// `@k-N` as `Rel(-N)`, `@k` as `Rel(0)`.
    Rel(i64),
    /// `@N`.
    Abs(i64),
    /// `@initial` (model chain only).
    Initial,
    /// `@irm_ref` (model chain only): the arm's `models.irm_reference`.
    IrmRef,
    /// `@judge` (model chain only): the arm's `models.judge`.
    Judge,
    /// `@reward_model` (model chain only): `models.reward_model`.
    RewardModel,
}

/// A parsed input reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Stage { stage: String, at: At },
    Model { at: At },
}

const SYNTAX_HINT: &str = "Write STAGE, STAGE@k, STAGE@k-1, STAGE@0, model@k-1, model@initial, \
                           model@irm_ref, model@judge or model@reward_model.";

impl Reference {
    /// Parse a reference; the error says what is wrong and what is allowed.
    pub fn parse(text: &str) -> Result<Reference, String> {
        let (name, at) = match text.split_once('@') {
            None => (text, At::Same),
            Some((name, at)) => (name, parse_at(at).ok_or_else(|| bad(text))?),
        };
        if name.is_empty() {
            return Err(bad(text));
        }
        if name == MODEL {
            return match at {
                At::Same => Err(format!(
                    "`{MODEL}` needs an iteration: write model@k-1 (the previous iteration's \
                     model), model@k-2 or model@initial"
                )),
                at => Ok(Reference::Model { at }),
            };
        }
        if matches!(at, At::Initial | At::IrmRef | At::Judge | At::RewardModel) {
            return Err(format!(
                "{text:?}: only the model chain has @initial, @irm_ref, @judge and \
                 @reward_model. {SYNTAX_HINT}"
            ));
        }
        Ok(Reference::Stage {
            stage: name.to_string(),
            at,
        })
    }
}

fn bad(text: &str) -> String {
    format!("{text:?} is not a reference. {SYNTAX_HINT}")
}

fn parse_at(at: &str) -> Option<At> {
    if at == "initial" {
        return Some(At::Initial);
    }
    if at == "irm_ref" {
        return Some(At::IrmRef);
    }
    if at == "judge" {
        return Some(At::Judge);
    }
    if at == "reward_model" {
        return Some(At::RewardModel);
    }
    if at == "k" {
        return Some(At::Rel(0));
    }
    if let Some(back) = at.strip_prefix("k-") {
        let n: i64 = back.parse().ok()?;
        return (n >= 1).then_some(At::Rel(-n));
    }
    at.parse::<i64>().ok().filter(|n| *n >= 0).map(At::Abs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let stage = |s: &str, at| Reference::Stage {
            stage: s.into(),
            at,
        };
        assert_eq!(Reference::parse("world"), Ok(stage("world", At::Same)));
        assert_eq!(Reference::parse("gen@k"), Ok(stage("gen", At::Rel(0))));
        assert_eq!(Reference::parse("gen@k-1"), Ok(stage("gen", At::Rel(-1))));
        assert_eq!(Reference::parse("sft@0"), Ok(stage("sft", At::Abs(0))));
        assert_eq!(
            Reference::parse("model@k-2"),
            Ok(Reference::Model { at: At::Rel(-2) })
        );
        assert_eq!(
            Reference::parse("model@initial"),
            Ok(Reference::Model { at: At::Initial })
        );
        assert_eq!(
            Reference::parse("model@irm_ref"),
            Ok(Reference::Model { at: At::IrmRef })
        );
        assert_eq!(
            Reference::parse("model@judge"),
            Ok(Reference::Model { at: At::Judge })
        );
        for bad in [
            "model",
            "gen@k+1",
            "gen@k-0",
            "@k",
            "gen@",
            "gen@-1",
            "gen@initial",
            "gen@irm_ref",
            "gen@judge",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}

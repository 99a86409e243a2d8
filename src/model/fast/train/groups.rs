//! How a training step's sequences are grouped, and where a group's tokens sit.
//!
//! [`plan`] decides the groups from the tokens alone (never the machine): under LoRA each
//! sequence is a parallel task, except that two sharing at least [`MIN_SHARED_TOKENS`]
//! leading tokens — a prompt's two responses, a judge prompt's two orders — form one group
//! that computes the shared prefix once. [`Layout`] packs a group's rows: its sequences back
//! to back, or the prefix once (slot 0) and each sequence's remaining tokens continuing it in
//! a cache slot of its own, from a copy of the prefix's keys and values
//! ([`Span::copies`]); [`Layout::row`] says which row holds a sequence's token.

use super::super::ResponseRows;
use super::super::forward::Span;

/// Most tokens per group (fixed, so the split does not depend on the machine).
const TRAIN_GROUP_TOKENS: usize = 1024;

/// Fewest leading tokens two sequences must share for a group to compute them once (see
/// [`plan`]).
const MIN_SHARED_TOKENS: usize = 16;

/// A group's sequences (indices into its output's sequences, in order) and how many leading
/// tokens they share and compute once (0: none; less than each one's length, so every
/// sequence keeps a row of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    pub members: Vec<usize>,
    pub shared: usize,
}

/// A group's rows: its sequences back to back, or the shared prefix once (slot 0) followed
/// by each sequence's remaining tokens, continuing it in a slot of its own (a copy of the
/// prefix's keys and values, see [`Span::copies`]).
pub(super) struct Layout {
    pub ids: Vec<u32>,
    pub spans: Vec<Span>,
    shared: usize,
    /// Positions per cache slot: the longest sequence.
    pub positions: usize,
}

impl Layout {
    pub(super) fn new(seqs: &[&[u32]], shared: usize) -> Self {
        let positions = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let (mut ids, mut spans) = (Vec::new(), Vec::new());
        if shared > 0 {
            ids.extend_from_slice(&seqs[0][..shared]);
            spans.push(Span {
                start: 0,
                len: shared,
                past: 0,
                slot: 0,
                copies: None,
            });
        }
        for s in seqs {
            spans.push(Span {
                start: ids.len(),
                len: s.len() - shared,
                past: shared,
                slot: spans.len(),
                copies: (shared > 0).then_some(0),
            });
            ids.extend_from_slice(&s[shared..]);
        }
        Layout {
            ids,
            spans,
            shared,
            positions,
        }
    }

    /// The span of sequence `m`'s own rows.
    pub(super) fn span_of(&self, m: usize) -> &Span {
        &self.spans[m + usize::from(self.shared > 0)]
    }

    /// How many sequences it holds.
    pub(super) fn members(&self) -> usize {
        self.spans.len() - usize::from(self.shared > 0)
    }

    /// The row holding token `pos` of sequence `m`.
    pub(super) fn row(&self, m: usize, pos: usize) -> usize {
        if pos < self.shared {
            return self.spans[0].start + pos;
        }
        let sp = self.span_of(m);
        sp.start + pos - sp.past
    }

    /// The row of sequence `m`'s last token.
    pub(super) fn last_row(&self, m: usize) -> usize {
        let sp = self.span_of(m);
        sp.start + sp.len - 1
    }
}

/// The groups. Under LoRA (`pairs`) each sequence is a parallel task of its own, except
/// that sequences sharing at least [`MIN_SHARED_TOKENS`] leading tokens are paired (longest
/// shared prefix first), and a pair computes its prefix once: both responses of one prompt,
/// both orders of one judge prompt. Else consecutive runs of about equal token counts, as
/// few as keep each under [`TRAIN_GROUP_TOKENS`] (at least one sequence each: each group's
/// gradient is a copy of the model). Depends on the sequences only, never on the machine.
pub(super) fn plan(seqs: &[Vec<u32>], pairs: bool) -> Vec<Plan> {
    if !pairs {
        let total: usize = seqs.iter().map(Vec::len).sum();
        let budget = total
            .div_ceil(total.div_ceil(TRAIN_GROUP_TOKENS).max(1))
            .max(1);
        return super::super::runs_within(seqs, budget)
            .into_iter()
            .map(|r| Plan {
                members: r.collect(),
                shared: 0,
            })
            .collect();
    }
    let n = seqs.len();
    let mut candidates = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            let (a, b) = (&seqs[i], &seqs[j]);
            let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            let shared = common
                .min(a.len().saturating_sub(1))
                .min(b.len().saturating_sub(1));
            if shared >= MIN_SHARED_TOKENS {
                candidates.push((shared, i, j));
            }
        }
    }
    candidates.sort_by_key(|&(shared, i, j)| (std::cmp::Reverse(shared), i, j));
    let mut partner: Vec<Option<(usize, usize)>> = vec![None; n];
    for (shared, i, j) in candidates {
        if partner[i].is_none() && partner[j].is_none() {
            partner[i] = Some((j, shared));
            partner[j] = Some((i, shared));
        }
    }
    (0..n)
        .filter_map(|i| match partner[i] {
            Some((j, _)) if j < i => None,
            Some((j, shared)) => Some(Plan {
                members: vec![i, j],
                shared,
            }),
            None => Some(Plan {
                members: vec![i],
                shared: 0,
            }),
        })
        .collect()
}

/// The rows of `plan`'s sequences.
pub(super) fn layout_of(seqs: &[Vec<u32>], plan: &Plan) -> Layout {
    let members: Vec<&[u32]> = plan.members.iter().map(|&m| seqs[m].as_slice()).collect();
    Layout::new(&members, plan.shared)
}

/// [`super::super::response_rows`] for a group's layout: the rows predicting each member's response
/// tokens (a shared prefix's row serves every member), those tokens, and the member.
pub(super) fn response_rows_in(
    layout: &Layout,
    seqs: &[Vec<u32>],
    prompt_lens: &[usize],
    members: &[usize],
) -> ResponseRows {
    let mut out = ResponseRows {
        rows: Vec::new(),
        targets: Vec::new(),
        owner: Vec::new(),
    };
    for (k, &m) in members.iter().enumerate() {
        let seq = &seqs[m];
        for i in prompt_lens[m] - 1..seq.len() - 1 {
            out.rows.push(layout.row(k, i));
            out.targets.push(seq[i + 1]);
            out.owner.push(k);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_pair_by_their_longest_shared_prefix() {
        let seq = |prefix: u32, n: usize, tail: &[u32]| -> Vec<u32> {
            let mut s: Vec<u32> = (0..n as u32).map(|i| prefix * 100 + i).collect();
            s.extend_from_slice(tail);
            s
        };
        // 0 and 2 share 20 tokens; 1 and 3 share 30 (and 3 with 0 nothing); 4 is alone;
        // 5 is 6 plus one token: they share all of 5 but its last token.
        let seqs = vec![
            seq(1, 20, &[7, 8]),
            seq(2, 30, &[1]),
            seq(1, 20, &[9]),
            seq(2, 30, &[2, 3]),
            seq(3, 40, &[]),
            seq(4, 18, &[]),
            seq(4, 18, &[5]),
        ];
        let plans = plan(&seqs, true);
        let got: Vec<(Vec<usize>, usize)> =
            plans.into_iter().map(|p| (p.members, p.shared)).collect();
        let want = vec![
            (vec![0, 2], 20),
            (vec![1, 3], 30),
            (vec![4], 0),
            (vec![5, 6], 17),
        ];
        assert_eq!(got, want);
        let few = plan(&seqs[..2], true);
        assert!(few.iter().all(|p| p.shared == 0), "nothing shared");
        let full = plan(&seqs, false);
        assert!(
            full.iter().all(|p| p.shared == 0),
            "no sharing without LoRA"
        );
    }

    #[test]
    fn a_shared_layout_maps_each_token_to_its_row() {
        let (a, b) = ([1u32, 2, 3, 4], [1u32, 2, 5]);
        let l = Layout::new(&[&a, &b], 2);
        assert_eq!(l.ids, vec![1, 2, 3, 4, 5]);
        assert_eq!(l.members(), 2);
        let rows: Vec<usize> = (0..4).map(|p| l.row(0, p)).collect();
        assert_eq!(rows, vec![0, 1, 2, 3]);
        let rows: Vec<usize> = (0..3).map(|p| l.row(1, p)).collect();
        assert_eq!(rows, vec![0, 1, 4]);
        assert_eq!((l.last_row(0), l.last_row(1)), (3, 4));
        assert_eq!(l.spans[2].copies, Some(0));
    }
}

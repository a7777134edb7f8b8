//! What an escalation policy (DESIGN §19) means: which policy an incident
//! follows, which step runs at a position of the chain, who it notifies and
//! when the next one is due.
//!
//! Owns: chain arithmetic over `config::escalation::EscalationSpec`. Pure:
//! times come in as arguments and go out as due times the store keeps
//! (`crate::escalator` runs them).
//! **Architecture Invariant:** no I/O and no clock; a step's position in the
//! chain (`seq`) is the only state, and it is the store's.

use crate::config::escalation::EscalationSpec;
use crate::event::Event;
use crate::route::matcher::matches;

/// The first policy whose `match` selects `event` (a policy without
/// `match` selects every event).
pub fn policy_for<'a>(policies: &'a [EscalationSpec], event: &Event) -> Option<&'a EscalationSpec> {
    policies
        .iter()
        .find(|p| p.matcher.as_ref().is_none_or(|m| matches(m, event)))
}

/// One position of a chain: which step of which round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `step` (a step of the policy) or `resolved` (the resolving event to
    /// the webhooks the chain notified).
    pub kind: &'static str,
    /// Position in the whole chain, repeats included (0-based).
    pub seq: u32,
    /// Index into the policy's `steps`.
    pub index: usize,
    /// 0 for the first run, 1 for the first repeat, …
    pub round: u32,
    /// The webhooks (names or ids, as written) to notify, minus the skipped.
    pub notify: Vec<String>,
    /// The webhooks the policy's `skip` kept from this step.
    pub skipped: Vec<String>,
    /// When the next position is due, if there is one: this step's due
    /// time plus its `wait_s` (the original schedule, not the time the step
    /// actually ran, so a restart keeps the times).
    pub next_due_ms: Option<i64>,
}

/// The step at position `seq` of `policy`'s chain, due at `due_ms`, with
/// `skip` evaluated against `latest` (the incident's latest event); `None`
/// past the chain's end.
pub fn step_at(policy: &EscalationSpec, seq: u32, due_ms: i64, latest: &Event) -> Option<Step> {
    let len = policy.steps.len();
    if len == 0 {
        return None;
    }
    let total = len as u64 * (u64::from(policy.repeat) + 1);
    if u64::from(seq) >= total {
        return None;
    }
    let index = seq as usize % len;
    let round = seq / len as u32;
    let spec = &policy.steps[index];
    let (skipped, notify): (Vec<String>, Vec<String>) = spec
        .notify
        .iter()
        .cloned()
        .partition(|w| policy.skip.get(w).is_some_and(|m| matches(m, latest)));
    let next_due_ms = (u64::from(seq) + 1 < total)
        .then(|| due_ms.saturating_add((spec.wait_s as i64).saturating_mul(1000)));
    Some(Step {
        kind: "step",
        seq,
        index,
        round,
        notify,
        skipped,
        next_due_ms,
    })
}

/// The notice a resolved incident's chain ends with (position `seq`, the
/// number of steps run): the resolving event `latest` goes to every webhook
/// the chain notified so far (each once), except those a `skip` matcher
/// keeps out for it (no phone call for a resolved incident).
pub fn resolved_notice(policy: &EscalationSpec, seq: u32, latest: &Event) -> Step {
    let mut names: Vec<String> = Vec::new();
    for s in policy.steps.iter().take(seq as usize) {
        for n in &s.notify {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    let (skipped, notify) = names
        .into_iter()
        .partition(|w| policy.skip.get(w).is_some_and(|m| matches(m, latest)));
    Step {
        kind: "resolved",
        seq,
        index: 0,
        round: 0,
        notify,
        skipped,
        next_due_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(yaml: &str) -> EscalationSpec {
        serde_saphyr::from_str(yaml).expect("valid policy")
    }

    fn event(data: serde_json::Value) -> Event {
        Event {
            id: "ev".into(),
            event_type: "finding_added".into(),
            time: "2026-11-22T10:00:00Z".into(),
            data: data.into(),
        }
    }

    const CHAIN: &str = "name: on-call
match: { severity: { at_least: high } }
steps:
  - { notify: [sms-alice, voice-alice], wait_s: 300 }
  - { notify: [sms-bob], wait_s: 600 }
  - { notify: [soc] }
repeat: 1
skip: { voice-alice: { status: resolved } }
";

    #[test]
    fn the_first_matching_policy_is_chosen() {
        let p = vec![policy(CHAIN), policy("name: all\nsteps: [{notify: [x]}]\n")];
        let high = event(json!({"severity": "critical"}));
        let low = event(json!({"severity": "low"}));
        assert_eq!(
            policy_for(&p, &high).map(|p| p.name.as_str()),
            Some("on-call")
        );
        assert_eq!(policy_for(&p, &low).map(|p| p.name.as_str()), Some("all"));
        assert_eq!(policy_for(&p[..1], &low), None);
    }

    #[test]
    fn steps_run_in_order_then_repeat_then_end_with_the_waits_on_the_original_schedule() {
        let p = policy(CHAIN);
        let e = event(json!({"status": "live"}));
        let mut due = 1_000;
        let mut seen = Vec::new();
        for seq in 0.. {
            let Some(s) = step_at(&p, seq, due, &e) else {
                break;
            };
            seen.push((s.index, s.round, s.notify.clone(), due));
            match s.next_due_ms {
                Some(n) => due = n,
                None => {
                    assert_eq!(seq, 5, "the last step has no next");
                }
            }
        }
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            seen,
            vec![
                (0, 0, names(&["sms-alice", "voice-alice"]), 1_000),
                (1, 0, names(&["sms-bob"]), 301_000),
                (2, 0, names(&["soc"]), 901_000),
                (0, 1, names(&["sms-alice", "voice-alice"]), 901_000),
                (1, 1, names(&["sms-bob"]), 1_201_000),
                (2, 1, names(&["soc"]), 1_801_000),
            ]
        );
    }

    #[test]
    fn skip_keeps_a_webhook_out_while_its_matcher_holds_for_the_latest_event() {
        let p = policy(CHAIN);
        let s = step_at(&p, 0, 0, &event(json!({"status": "resolved"}))).expect("step");
        assert_eq!(s.notify, vec!["sms-alice".to_string()]);
        assert_eq!(s.skipped, vec!["voice-alice".to_string()]);
        let s = step_at(&p, 0, 0, &event(json!({"status": "live"}))).expect("step");
        assert!(s.skipped.is_empty());
    }

    #[test]
    fn the_resolved_notice_goes_to_the_webhooks_notified_so_far_minus_the_skipped() {
        let p = policy(CHAIN);
        let resolved = event(json!({"status": "resolved"}));
        let n = resolved_notice(&p, 1, &resolved);
        assert_eq!((n.kind, n.seq, n.next_due_ms), ("resolved", 1, None));
        assert_eq!(n.notify, vec!["sms-alice".to_string()]);
        assert_eq!(n.skipped, vec!["voice-alice".to_string()]);
        let n = resolved_notice(&p, 9, &resolved);
        assert_eq!(
            n.notify,
            ["sms-alice", "sms-bob", "soc"].map(String::from).to_vec()
        );
        assert!(resolved_notice(&p, 0, &resolved).notify.is_empty());
    }
}

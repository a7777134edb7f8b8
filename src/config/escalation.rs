//! Escalation policies as written in relay.yaml (DESIGN §19):
//! `escalations:` — which incidents start a chain (`match`), its ordered
//! `steps` (`notify`, `wait_s`), `repeat` and per-webhook `skip` matchers.
//!
//! Owns: their shapes and the checks that need nothing but themselves and
//! the file's webhook names. What a policy means at run time is
//! `crate::incident::escalation`'s (pure). Plain data: imports no sibling
//! module.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::matcher::Matcher;

/// The longest wait between two steps (a week): a chain is for people on
/// call, and a due time far out is almost surely a typo.
pub const MAX_WAIT_S: u64 = 7 * 24 * 3600;
/// The most repeats of a chain.
pub const MAX_REPEAT: u32 = 100;

/// One entry of `escalations:` (or one policy posted to
/// `POST /api/v1/escalations`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationSpec {
    /// Unique among the policies; incidents remember the policy by name.
    pub name: String,
    /// Incidents whose opening event this matcher selects follow this
    /// policy (the first policy that matches wins). Absent: every incident.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<Matcher>,
    /// Run in order until the incident is acknowledged or resolved.
    pub steps: Vec<StepSpec>,
    /// How many more times the steps run when still unacknowledged.
    #[serde(default)]
    pub repeat: u32,
    /// Webhook (name or id) → matcher over the incident's latest event: the
    /// webhook is not notified while it holds (no phone call for a
    /// resolved incident).
    #[serde(default)]
    pub skip: BTreeMap<String, Matcher>,
}

/// One step of a chain.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Webhooks (names or ids) notified by this step, all at once.
    pub notify: Vec<String>,
    /// Seconds from this step to the next (0: at once).
    #[serde(default)]
    pub wait_s: u64,
}

impl EscalationSpec {
    /// Checks one policy; `field` is `escalations[i]`, `is_webhook` tells
    /// whether a name names a webhook of the file. Errors name the field.
    pub fn validate(
        &self,
        field: &str,
        is_webhook: &dyn Fn(&str) -> bool,
    ) -> Result<(), (String, String)> {
        if self.name.trim().is_empty() {
            return Err((format!("{field}.name"), "must not be empty".into()));
        }
        if self.steps.is_empty() {
            return Err((
                format!("{field}.steps"),
                "a policy needs at least one step".into(),
            ));
        }
        if self.repeat > MAX_REPEAT {
            return Err((
                format!("{field}.repeat"),
                format!("{} is more than {MAX_REPEAT}", self.repeat),
            ));
        }
        for (i, s) in self.steps.iter().enumerate() {
            let f = format!("{field}.steps[{i}]");
            if s.notify.is_empty() {
                return Err((
                    format!("{f}.notify"),
                    "a step notifies at least one webhook".into(),
                ));
            }
            if s.wait_s > MAX_WAIT_S {
                return Err((
                    format!("{f}.wait_s"),
                    format!("{} is more than {MAX_WAIT_S} (a week)", s.wait_s),
                ));
            }
            for (j, n) in s.notify.iter().enumerate() {
                if !is_webhook(n) {
                    return Err((
                        format!("{f}.notify[{j}]"),
                        format!("{n:?} names no webhook"),
                    ));
                }
            }
        }
        for n in self.skip.keys() {
            if !is_webhook(n) {
                return Err((
                    format!("{field}.skip.{n}"),
                    format!("{n:?} names no webhook"),
                ));
            }
        }
        Ok(())
    }
}

/// Checks the list: each policy, and names unique.
pub fn validate_all(
    policies: &[EscalationSpec],
    is_webhook: &dyn Fn(&str) -> bool,
) -> Result<(), (String, String)> {
    let mut names = std::collections::HashSet::new();
    for (i, p) in policies.iter().enumerate() {
        let field = format!("escalations[{i}]");
        p.validate(&field, is_webhook)?;
        if !names.insert(p.name.as_str()) {
            return Err((
                format!("{field}.name"),
                format!("{:?} is used by another policy", p.name),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const HOOKS: &str = "webhooks:\n  - { name: sms-alice, url: \"https://a.example\" }\n  - { name: soc, url: \"https://b.example\" }\n";

    fn check(escalations: &str) -> Result<Config, String> {
        Config::parse(&format!("{HOOKS}escalations:\n{escalations}"), "r.yaml")
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_policy_naming_file_webhooks_by_name_or_id_is_accepted() {
        let c = check("  - name: on-call\n    match: { severity: high }\n    steps: [{notify: [sms-alice], wait_s: 300}, {notify: [soc]}]\n    repeat: 1\n    skip: { sms-alice: { status: resolved } }\n")
            .expect("valid");
        assert_eq!(c.escalations.len(), 1);
        assert_eq!(c.escalations[0].steps[0].wait_s, 300);
        assert_eq!(c.escalations[0].repeat, 1);
    }

    #[test]
    fn bad_policies_are_refused_naming_the_field_and_value() {
        for (yaml, want) in [
            ("  - { name: p, steps: [] }\n", "escalations[0].steps"),
            (
                "  - { name: p, steps: [{notify: [nobody]}] }\n",
                "escalations[0].steps[0].notify[0]: \"nobody\" names no webhook",
            ),
            (
                "  - { name: p, steps: [{notify: [soc], wait_s: 9999999}] }\n",
                "escalations[0].steps[0].wait_s",
            ),
            (
                "  - { name: p, steps: [{notify: [soc]}], skip: {ghost: {status: x}} }\n",
                "escalations[0].skip.ghost",
            ),
            (
                "  - { name: p, steps: [{notify: [soc]}] }\n  - { name: p, steps: [{notify: [soc]}] }\n",
                "escalations[1].name: \"p\" is used by another policy",
            ),
            (
                "  - { name: p, steps: [{notify: [soc], wiat_s: 1}] }\n",
                "wiat_s",
            ),
        ] {
            let e = check(yaml).expect_err(yaml);
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }
}

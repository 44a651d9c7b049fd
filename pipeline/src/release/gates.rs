//! The gates of a promotion that need no registry: the previous
//! environment, and the approvals.

use std::collections::BTreeSet;
use std::time::Duration;

use super::policy::Environment;
use super::promote::{PromotionError, PromotionRequest};
use super::state::EnvironmentState;
use crate::reference::Pinned;

/// `image` is live in `previous` (whose state is `there`) and has been for
/// `env.soak_in_previous`, judged at `now` (Unix seconds).
pub(super) fn live_and_soaked(
    env: &Environment,
    previous: &Environment,
    there: &EnvironmentState,
    image: &Pinned,
    now: i64,
) -> Result<(), PromotionError> {
    let live = match &there.live {
        Some(r) if r.digest == image.digest() => r,
        other => {
            return Err(PromotionError::NotLiveInPrevious {
                image: image.to_string(),
                environment: env.name.clone(),
                previous: previous.name.clone(),
                live: other.as_ref().map(|r| r.image.clone()),
            });
        }
    };
    let live_for = Duration::from_secs(u64::try_from(now - live.since_unix).unwrap_or(0));
    if live_for < env.soak_in_previous {
        return Err(PromotionError::NotSoaked {
            image: image.to_string(),
            environment: env.name.clone(),
            previous: previous.name.clone(),
            live_for,
            soak: env.soak_in_previous,
        });
    }
    Ok(())
}

/// Enough distinct approvers holding the environment's role, none of them
/// the requester.
pub(super) fn approvals(
    env: &Environment,
    request: &PromotionRequest,
) -> Result<(), PromotionError> {
    if env.approvals == 0 {
        return Ok(());
    }
    let role = env.approver_role.clone().unwrap_or_default();
    let mut approvers = BTreeSet::new();
    let mut not_counted = Vec::new();
    for a in &request.approvals {
        if a.approver == request.requested_by {
            not_counted.push(format!(
                "{} requested the promotion and cannot approve it",
                a.approver
            ));
        } else if a.role != role {
            not_counted.push(format!(
                "{} approved as {:?}, not {role:?}",
                a.approver, a.role
            ));
        } else if !approvers.insert(a.approver.as_str()) {
            not_counted.push(format!(
                "{} approved more than once (counted once)",
                a.approver
            ));
        }
    }
    let valid = u32::try_from(approvers.len()).unwrap_or(u32::MAX);
    if valid >= env.approvals {
        return Ok(());
    }
    Err(PromotionError::NeedsApproval {
        environment: env.name.clone(),
        needed: env.approvals,
        role,
        valid,
        not_counted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosign::keys;
    use crate::release::policy::EnvironmentPolicy;
    use crate::release::promote::Approval;
    use crate::release::state::Release;

    const IMAGE: &str = "127.0.0.1:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const OTHER: &str = "127.0.0.1:5000/app@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

    fn policy() -> (test_support::TempDir, EnvironmentPolicy) {
        let d = test_support::TempDir::new("gates");
        std::fs::write(
            d.path().join("k.pub"),
            keys::public_pem(keys::generate().verifying_key()),
        )
        .unwrap();
        std::fs::write(d.path().join("scan.yaml"), "fail_on: high\n").unwrap();
        let verify = "[environment.verify]\nkeys = [\"k.pub\"]\nattestations = [\"cyclonedx\", \"vuln\", \"slsaprovenance\"]\nscan_policy = \"scan.yaml\"\n";
        let text = format!(
            "[[environment]]\nname = \"dev\"\nautomatic = true\nbranches = [\"main\"]\n{verify}[environment.target]\nkind = \"docker\"\nservice = \"a\"\nreplicas = 1\nport = 80\nhealth_path = \"/\"\nlisten = \"127.0.0.1:1\"\n\
             [[environment]]\nname = \"prod\"\napprovals = 2\napprover_role = \"release-manager\"\nsoak_in_previous = \"1h\"\n{verify}[environment.target]\nkind = \"docker\"\nservice = \"b\"\nreplicas = 1\nport = 80\nhealth_path = \"/\"\nlisten = \"127.0.0.1:2\"\n"
        );
        let p = EnvironmentPolicy::parse(&text, &d.path().join("e.toml"), d.path()).unwrap();
        (d, p)
    }

    fn live_since(image: &str, since_unix: i64) -> EnvironmentState {
        let p = Pinned::parse(image).unwrap();
        EnvironmentState {
            live: Some(Release {
                image: image.into(),
                digest: p.digest().into(),
                commit: None,
                source: None,
                since: String::new(),
                since_unix,
                sbom: None,
                scan: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_digest_must_be_live_and_soaked_in_the_previous_environment() {
        let (_d, p) = policy();
        let (dev, prod) = (p.get("dev").unwrap(), p.get("prod").unwrap());
        let image = Pinned::parse(IMAGE).unwrap();
        let e =
            live_and_soaked(prod, dev, &EnvironmentState::default(), &image, 10_000).unwrap_err();
        assert!(
            matches!(&e, PromotionError::NotLiveInPrevious { live: None, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("promote it to dev first"), "{e}");
        let e = live_and_soaked(prod, dev, &live_since(OTHER, 0), &image, 10_000).unwrap_err();
        assert!(
            matches!(&e, PromotionError::NotLiveInPrevious { live: Some(l), .. } if l == OTHER),
            "{e}"
        );
        let e = live_and_soaked(prod, dev, &live_since(IMAGE, 10_000 - 600), &image, 10_000)
            .unwrap_err();
        assert!(matches!(&e, PromotionError::NotSoaked { .. }), "{e}");
        assert!(
            e.to_string().contains("for 10m") && e.to_string().contains("try again in 50m"),
            "{e}"
        );
        live_and_soaked(prod, dev, &live_since(IMAGE, 10_000 - 3600), &image, 10_000).unwrap();
    }

    fn approval(who: &str, role: &str) -> Approval {
        Approval {
            approver: who.into(),
            role: role.into(),
            at: "2026-01-01T00:00:00Z".into(),
            reason: "ok".into(),
        }
    }

    fn request(approvals: Vec<Approval>) -> PromotionRequest {
        PromotionRequest {
            image: IMAGE.into(),
            environment: "prod".into(),
            requested_by: "ana".into(),
            approvals,
        }
    }

    #[test]
    fn approvals_are_distinct_of_the_role_and_never_the_requesters() {
        let (_d, p) = policy();
        let prod = p.get("prod").unwrap();
        approvals(p.get("dev").unwrap(), &request(vec![])).unwrap();
        let rm = "release-manager";
        approvals(prod, &request(vec![approval("bo", rm), approval("cy", rm)])).unwrap();
        let cases = [
            (vec![], "it has 0"),
            (
                vec![approval("bo", rm), approval("ana", rm)],
                "ana requested the promotion and cannot approve it",
            ),
            (
                vec![approval("bo", rm), approval("cy", "developer")],
                "cy approved as \"developer\"",
            ),
            (
                vec![approval("bo", rm), approval("bo", rm)],
                "bo approved more than once",
            ),
        ];
        for (given, says) in cases {
            let e = approvals(prod, &request(given)).unwrap_err();
            assert!(
                matches!(e, PromotionError::NeedsApproval { needed: 2, .. }),
                "{e}"
            );
            assert!(e.to_string().contains(says), "{says}: {e}");
        }
    }
}

//! Deciding a commit and telling Smokey, once: shared by the status route (a CI result
//! arrived) and the push route (deploy moved to a commit whose results were recorded).

use std::time::Duration;

use super::Effects;
use super::Failure;
use super::claims::{self, ClaimHandle};
use super::retried;
use crate::domain::{Verdict, VerdictRecord};
use crate::notify::{AfterPosts, Reach, SmokeyMessage};
use crate::rules::status::{self as rules, Decided, Report, StatusDecision, VerdictTurn};
use crate::store::VerdictClaim;

/// How long a delivery waits for another one posting the same mirrored status.
const WAIT_FOR_MIRROR: Duration = Duration::from_secs(5);

/// What deciding a result may need, read or given out at the same time as the result is
/// recorded: the relay's deploy mark for the commit (unless the payload names deploy) and a
/// place in the outbox for its verdict. Only for a result that decides its commit by itself
/// (no required contexts); otherwise nothing, and `judge` reads what it needs.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    place: Option<u64>,
    deployed: Option<bool>,
}

pub(crate) async fn prepare(fx: &Effects, report: &Report) -> Result<Prepared, Failure> {
    let decides_alone = fx.config.required_contexts.is_empty()
        && matches!(
            rules::decide(&report.record, &[], &fx.config),
            StatusDecision::Decided(_)
        );
    if !decides_alone {
        return Ok(Prepared::default());
    }
    let deployed = async {
        match report.names_deploy {
            true => Ok(None),
            false => fx.store.is_deployed(&report.record.sha).await.map(Some),
        }
    };
    let (place, deployed) = tokio::try_join!(fx.store.reserve_place(), deployed)?;
    Ok(Prepared {
        place: Some(place),
        deployed,
    })
}

/// Decides the commit of a result that was just recorded, and sends the verdict if this
/// decides it. Whether the commit is deploy's head is settled only when the result would
/// decide it: by the payload, the relay's deploy record, or else one read of the branch.
pub(crate) async fn judge(
    fx: &Effects,
    delivery_id: &str,
    report: &Report,
    prepared: Prepared,
) -> Result<String, Failure> {
    let sha = &report.record.sha;
    let latest = match fx.config.required_contexts.is_empty() {
        true => Vec::new(),
        false => fx.store.latest_statuses(sha).await?,
    };
    let decided = match rules::decide(&report.record, &latest, &fx.config) {
        StatusDecision::Undecided(reason) => {
            super::give_back_place(fx, prepared.place).await;
            return Ok(reason);
        }
        StatusDecision::Decided(decided) => decided,
    };
    let deployed = match prepared.deployed {
        Some(deployed) => deployed,
        None => report.names_deploy || fx.store.is_deployed(sha).await?,
    };
    if !deployed {
        let deploy = &fx.config.deploy_branch;
        let head = retried(fx, &format!("read {deploy}"), || {
            fx.github.branch_head(deploy)
        })
        .await?;
        if head != *sha {
            super::give_back_place(fx, prepared.place).await;
            return Ok(format!(
                "Not a commit on {deploy} (its head is {head}); recorded only"
            ));
        }
    }
    let message = report.commit_message.clone();
    send_once(fx, delivery_id, sha, decided, message, prepared.place).await
}

/// Decides a commit deploy has just moved to from the results recorded before, and sends
/// the verdict if they decide it.
pub(crate) async fn judge_deployed(
    fx: &Effects,
    delivery_id: &str,
    sha: &str,
    commit_message: Option<String>,
) -> Result<String, Failure> {
    let latest = fx.store.latest_statuses(sha).await?;
    let decision = rules::decide_recorded(&latest, &fx.config);
    judge_recorded(fx, delivery_id, sha, commit_message, decision).await
}

/// Sends the verdict on a commit deploy has just moved to, if its recorded results
/// (read by the caller) decided it.
pub(crate) async fn judge_recorded(
    fx: &Effects,
    delivery_id: &str,
    sha: &str,
    commit_message: Option<String>,
    decision: StatusDecision,
) -> Result<String, Failure> {
    match decision {
        StatusDecision::Undecided(reason) => Ok(format!("CI has not decided it: {reason}")),
        StatusDecision::Decided(decided) => {
            send_once(fx, delivery_id, sha, decided, commit_message, None).await
        }
    }
}

/// Sends a commit's verdict at most once per commit, and at least once: the delivery that
/// claims the verdict sends it (and mirrors it), and a retry of that delivery (or any
/// delivery once the claim is old) sends it again if it was never marked sent. The claim
/// and the message's outbox entry are one write, at `place` (given out here if not before).
async fn send_once(
    fx: &Effects,
    delivery_id: &str,
    sha: &str,
    decided: Decided,
    commit_message: Option<String>,
    place: Option<u64>,
) -> Result<String, Failure> {
    let commit_message = match message_to_send(fx, sha, commit_message, place).await? {
        Ok(message) => message,
        Err(held) => return Ok(decided_already(&held)),
    };
    let claim = VerdictRecord {
        verdict: Verdict {
            sha: sha.to_string(),
            state: decided.state.clone(),
            ci_url: decided.ci_url.clone(),
            commit_message,
        },
        delivery_id: delivery_id.to_string(),
        claimed_at: fx.clock.now(),
        notified_at: None,
        sent_to: None,
    };
    let place = match place {
        Some(place) => place,
        None => fx.store.reserve_place().await?,
    };
    let announcement = SmokeyMessage::CommitStatus(claim.verdict.clone()).to_json();
    let held = match fx
        .store
        .claim_verdict(&claim, Some((place, &announcement)))
        .await?
    {
        VerdictClaim::Claimed => None,
        VerdictClaim::Taken(held) => {
            super::give_back_place(fx, Some(place)).await;
            Some(held)
        }
    };
    let claimed = held.is_none();
    match rules::verdict_turn(held, claim) {
        VerdictTurn::Send(verdict) => {
            post(fx, delivery_id, &verdict, decided, claimed, place).await
        }
        VerdictTurn::SentAlready(held) => Ok(decided_already(&held)),
        VerdictTurn::Sending(held) => Ok(format!(
            "Commit {} was decided by delivery {}, which is sending it",
            held.verdict.sha, held.delivery_id
        )),
    }
}

/// The commit message the verdict carries: the one given, else GitHub's; `Err` with the
/// commit's verdict when it was sent already (only a check run leaves the message to be
/// read, and it is not read for a commit that is done), its place given back.
async fn message_to_send(
    fx: &Effects,
    sha: &str,
    commit_message: Option<String>,
    place: Option<u64>,
) -> Result<Result<String, VerdictRecord>, Failure> {
    if let Some(message) = commit_message {
        return Ok(Ok(message));
    }
    if let Some(held) = fx.store.verdict(sha).await?
        && held.notified_at.is_some()
    {
        super::give_back_place(fx, place).await;
        return Ok(Err(held));
    }
    let message = retried(fx, &format!("read commit {sha}"), || {
        fx.github.commit_message(sha)
    })
    .await?;
    Ok(Ok(message))
}

/// Posts a claimed verdict at `place` and marks it sent; `claimed` is false for a retry
/// that took over a verdict never marked sent, which goes out as a new outbox entry.
async fn post(
    fx: &Effects,
    delivery_id: &str,
    verdict: &Verdict,
    decided: Decided,
    claimed: bool,
    place: u64,
) -> Result<String, Failure> {
    let message = SmokeyMessage::CommitStatus(verdict.clone());
    let sent_to = |sent: usize| {
        format!(
            "Sent commit_status {} for {} to {sent} connection(s)",
            verdict.state, verdict.sha
        )
    };
    let mirroring = fx.config.mirror_status_context.is_some();
    let sent = match (claimed, mirroring) {
        // The message is in the outbox with the claim: post it, and mark it sent while the
        // keys' cursors move.
        (true, false) => {
            let now = fx.clock.now();
            let sha = verdict.sha.as_str();
            let mark: AfterPosts = Box::new(move |reach: Reach| {
                Box::pin(async move {
                    fx.store
                        .mark_verdict_notified(sha, now, reach.sent as u64)
                        .await
                })
            });
            let reach = super::deliver(fx.notifier.as_ref(), place, &message, Some(mark)).await?;
            return Ok(sent_to(reach.sent));
        }
        // Mirrored before it is marked sent, so that a crash in between is retried.
        (true, true) => {
            super::deliver(fx.notifier.as_ref(), place, &message, None)
                .await?
                .sent
        }
        // Sent again by a retry: a new outbox entry.
        (false, _) => super::say(fx.notifier.as_ref(), message).await?,
    };
    let mirrored = mirror(fx, delivery_id, verdict, decided).await?;
    fx.store
        .mark_verdict_notified(&verdict.sha, fx.clock.now(), sent as u64)
        .await?;
    Ok(format!("{}{mirrored}", sent_to(sent)))
}

fn decided_already(held: &VerdictRecord) -> String {
    format!(
        "Commit {} was decided already ({}); not sent again",
        held.verdict.sha, held.verdict.state
    )
}

/// Posts the verdict as a commit status of `MIRROR_STATUS_CONTEXT`, once per commit. It is
/// posted before the verdict is marked sent, so a crash in between is retried; the claim
/// keeps a retry from posting it twice. GitHub refusing it for good is logged and does not
/// hold back the verdict.
async fn mirror(
    fx: &Effects,
    delivery_id: &str,
    verdict: &Verdict,
    decided: Decided,
) -> Result<String, Failure> {
    let Some(context) = &fx.config.mirror_status_context else {
        return Ok(String::new());
    };
    // A retry sends the verdict claimed first; the contexts are this delivery's.
    let contexts = match decided.state == verdict.state {
        true => decided.contexts,
        false => Vec::new(),
    };
    let status = rules::mirror_status(
        &Decided {
            state: verdict.state.clone(),
            ci_url: verdict.ci_url.clone(),
            contexts,
        },
        context,
    );
    let claim = ClaimHandle::new(
        fx.store.as_ref(),
        fx.clock.as_ref(),
        format!("mirror/{}", verdict.sha),
        delivery_id,
    );
    let posted = claims::once(&claim, WAIT_FOR_MIRROR, "Mirroring the verdict", || async {
        retried(fx, &format!("post {context}"), || {
            fx.github.create_status(&verdict.sha, &status)
        })
        .await
        .map(|()| format!("mirrored as {context}"))
    })
    .await;
    match posted {
        Err(Failure::Permanent(reason)) => {
            tracing::warn!(sha = %verdict.sha, %reason, "mirrored status refused");
            Ok(format!("; not mirrored: {reason}"))
        }
        Ok(done) => Ok(format!("; {done}")),
        Err(failure) => Err(failure),
    }
}

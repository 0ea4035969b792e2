//! The flash sale with a waiting list: every buyer who loses joins the line for the
//! ticket they tried; then, round after round, a share of the holders abandon (cancel)
//! and the first in line must get the ticket, in join order, with nobody else between.
//! A short window (`ORDER_TTL_SECONDS=5`) adds hand-overs by expiry; both are measured.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{list_for_sale, order_window, run_all, timestamp};
use crate::{
    Options, Outcome,
    stats::{Figure, Samples, latency_figures},
    target::{Target, User},
};

/// A hand-over that has not shown this long after its lapse counts as lost: the periodic
/// check that finishes interrupted hand-overs runs every 2 s.
const SETTLE: Duration = Duration::from_secs(5);

/// An order window this short is waited out, so expiries hand tickets over too.
const SHORT_WINDOW: Duration = Duration::from_secs(60);

/// One ticket: its first buyer and everyone in line, by the position the server answered.
struct Line {
    ticket: String,
    winner: Option<(usize, String)>,
    waiting: Vec<(u64, usize)>,
}

/// An order as a buyer sees it in their history.
#[derive(Clone)]
struct Seen {
    buyer: usize,
    id: String,
    live: bool,
    created: DateTime<Utc>,
    /// When the reservation ended: the buyer's cancel, or the window's end.
    lapsed: Option<(DateTime<Utc>, bool)>,
}

pub async fn waitlist_sale(target: &Target, o: &Options) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let seller = target.user();
    let tickets = list_for_sale(target, &seller, o.tickets).await?;
    let buyers: Vec<User> = (0..o.buyers).map(|_| target.user()).collect();
    let at_once = o.at_once.unwrap_or(o.buyers).clamp(1, o.buyers.max(1));

    // One try each at ticket i mod n; a 409 joins that ticket's line.
    let waitlist = format!("{}/waitlist", target.orders);
    let tries = run_all(o.buyers, at_once, "buyers", |i| {
        let buyer = &buyers[i];
        let ticket = i % tickets.len();
        let body = json!({ "ticketId": tickets[ticket] });
        let waitlist = &waitlist;
        async move {
            let resp = target.post(&target.orders, buyer, &body).await;
            match resp.as_ref().map(|r| r.status()) {
                Ok(StatusCode::CREATED) => {
                    let order: Value = resp.ok()?.json().await.ok()?;
                    Some(Try::Won(i, ticket, order))
                }
                Ok(StatusCode::CONFLICT) => {
                    let t0 = Instant::now();
                    let joined = target.post(waitlist, buyer, &body).await.ok()?;
                    let status = joined.status();
                    let entry: Value = joined.json().await.unwrap_or_default();
                    Some(match (status, entry["position"].as_u64()) {
                        (StatusCode::CREATED, Some(p)) => Try::Joined(i, ticket, p, t0.elapsed()),
                        _ => Try::Refused(status.as_u16()),
                    })
                }
                Ok(other) => Some(Try::Refused(other.as_u16())),
                Err(_) => Some(Try::Refused(0)),
            }
        }
    })
    .await;

    let mut lines: Vec<Line> = tickets
        .iter()
        .map(|t| Line {
            ticket: t.clone(),
            winner: None,
            waiting: Vec::new(),
        })
        .collect();
    let mut joins = Samples::default();
    let mut window = None;
    let mut refused = std::collections::BTreeMap::<u16, usize>::new();
    // Answers arrive in completion order, so each names its buyer.
    for t in tries {
        match t {
            Some(Try::Won(buyer, ticket, order)) => {
                window = window.or_else(|| order_window(&order)?.to_std().ok());
                let Some(order) = order["id"].as_str().map(String::from) else {
                    *refused.entry(0).or_default() += 1;
                    continue;
                };
                if lines[ticket].winner.replace((buyer, order)).is_some() {
                    out.failures
                        .push(format!("ticket {} ordered by two buyers", tickets[ticket]));
                }
            }
            Some(Try::Joined(buyer, ticket, position, elapsed)) => {
                joins.push(elapsed);
                lines[ticket].waiting.push((position, buyer));
            }
            Some(Try::Refused(s)) => *refused.entry(s).or_default() += 1,
            None => *refused.entry(0).or_default() += 1,
        }
    }
    if !refused.is_empty() {
        out.failures.push(format!(
            "orders or joins not answered 201 or 409 (0: no answer): {refused:?}"
        ));
    }
    let mut duplicate_positions = 0;
    for line in &mut lines {
        line.waiting.sort();
        let distinct: HashSet<u64> = line.waiting.iter().map(|(p, _)| *p).collect();
        duplicate_positions += line.waiting.len() - distinct.len();
    }
    if duplicate_positions > 0 {
        out.failures.push(format!(
            "{duplicate_positions} joins were answered a position someone else had"
        ));
    }
    let waiters: usize = lines.iter().map(|l| l.waiting.len()).sum();

    // Rounds of abandonment: whoever holds a chosen ticket now cancels.
    let mut cancels = 0;
    for round in 0..o.rounds {
        let chosen: Vec<&Line> = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| (((i * 37 + round * 11) % 100) as u64) < o.abandon_percent)
            .map(|(_, l)| l)
            .collect();
        let done = run_all(chosen.len(), 64, "abandoning", |i| {
            let line = chosen[i];
            let buyers = &buyers;
            async move {
                let Some(holder) = history(target, buyers, line).await.pop() else {
                    return false;
                };
                if !holder.live {
                    return false;
                }
                let url = format!("{}/{}", target.orders, holder.id);
                target
                    .client
                    .delete(&url)
                    .bearer_auth(&buyers[holder.buyer].token)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::NO_CONTENT)
            }
        })
        .await;
        cancels += done.into_iter().filter(|c| *c).count();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // With a short window (ORDER_TTL_SECONDS), let one run out so hand-overs by expiry
    // are measured too; the line walks on without anyone cancelling.
    match window {
        Some(w) if w <= SHORT_WINDOW => {
            out.notes.push(format!(
                "order window {} s: waited one window for hand-overs by expiry",
                w.as_secs()
            ));
            tokio::time::sleep(w + SETTLE).await;
        }
        _ => tokio::time::sleep(SETTLE).await,
    }

    // Each line's history, read in reverse join order so that a hand-over racing the
    // read can only add to the end of what was seen.
    let mut histories = run_all(lines.len(), 16, "histories", |i| {
        let read = history(target, &buyers, &lines[i]);
        async move { (i, read.await) }
    })
    .await;
    // They finish in any order.
    histories.sort_by_key(|(i, _)| *i);
    let histories: Vec<Vec<Seen>> = histories.into_iter().map(|(_, h)| h).collect();
    let now = Utc::now();
    let (mut latency_cancel, mut latency_expiry) = (Samples::default(), Samples::default());
    let (mut handed, mut out_of_order, mut lost, mut two_live) = (0, 0, 0, 0);
    let mut next_up = Vec::new();
    for (line, seen) in lines.iter().zip(&histories) {
        // seen[0] is the winner's order, then waiters' orders from the line.
        let recipients: Vec<usize> = seen.iter().skip(1).map(|s| s.buyer).collect();
        let first_in_line: Vec<usize> = line
            .waiting
            .iter()
            .take(recipients.len())
            .map(|(_, b)| *b)
            .collect();
        handed += recipients.len();
        if recipients != first_in_line {
            out_of_order += recipients.len();
            out.failures.push(format!(
                "ticket {}: handed to {recipients:?}, first in line were {first_in_line:?}",
                line.ticket
            ));
        }
        two_live += usize::from(seen.iter().filter(|s| s.live).count() > 1);
        for pair in seen.windows(2) {
            let (before, after) = (&pair[0], &pair[1]);
            if let Some((lapsed, expired)) = before.lapsed {
                let ms = (after.created - lapsed).num_microseconds().unwrap_or(0) as f64 / 1e3;
                if expired {
                    latency_expiry.push_ms(ms);
                } else {
                    latency_cancel.push_ms(ms);
                }
            }
        }
        if let (Some(last), Some(&(_, next))) = (seen.last(), line.waiting.get(recipients.len())) {
            match last.lapsed {
                Some((lapsed, _)) if now - lapsed > chrono::Duration::from_std(SETTLE)? => {
                    lost += 1;
                    out.failures.push(format!(
                        "ticket {}: lapsed at {lapsed} with buyers in line, nobody got it",
                        line.ticket
                    ));
                }
                Some(_) => {}
                None => next_up.push((line.ticket.clone(), next)),
            }
        }
    }
    if two_live > 0 {
        out.failures
            .push(format!("{two_live} tickets held by two live orders"));
    }

    // The line closed up behind every hand-over: whoever is next is told position 1
    // (404 if a window ended since and they were served meanwhile).
    let positions = run_all(next_up.len(), 64, "positions", |i| {
        let (ticket, buyer) = &next_up[i];
        let url = format!("{waitlist}/{ticket}");
        let user = &buyers[*buyer];
        async move {
            let resp = target.get(&url, Some(user)).await.ok()?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Some(1);
            }
            let entry: Value = resp.json().await.ok()?;
            entry["position"].as_u64()
        }
    })
    .await;
    let not_first = positions.iter().filter(|p| **p != Some(1)).count();
    if not_first > 0 {
        out.failures.push(format!(
            "{not_first} buyers next in line were not told position 1"
        ));
    }

    out.figures.push(Figure::new(
        format!("buyers ({} tickets)", tickets.len()),
        o.buyers as f64,
        "",
    ));
    out.figures
        .push(Figure::new("buyers waiting in line", waiters as f64, ""));
    out.figures
        .extend(latency_figures("join latency", &joins.summary()));
    out.figures.push(Figure::new(
        format!("holders cancelled ({} rounds)", o.rounds),
        cancels as f64,
        "",
    ));
    out.figures.push(Figure::new(
        "hand-overs (cancel or expiry)",
        handed as f64,
        "",
    ));
    out.figures.extend(latency_figures(
        "hand-over after a cancel (cancelledAt -> createdAt)",
        &latency_cancel.summary(),
    ));
    out.figures.extend(latency_figures(
        "hand-over after expiry (expiresAt -> createdAt)",
        &latency_expiry.summary(),
    ));
    let fairness = if handed == 0 {
        100.0
    } else {
        (handed - out_of_order) as f64 * 100.0 / handed as f64
    };
    out.figures
        .push(Figure::new("hand-overs in join order", fairness, "%"));
    out.figures
        .push(Figure::new("hand-overs lost", lost as f64, ""));
    if handed == 0 {
        out.notes
            .push("no hand-over happened: raise --buyers or --abandon-percent".into());
    }
    Ok(out)
}

enum Try {
    /// Buyer, ticket index, the order as answered.
    Won(usize, usize, Value),
    /// Buyer, ticket index, position answered, join latency.
    Joined(usize, usize, u64, Duration),
    Refused(u16),
}

/// The ticket's orders in the order they held it: the winner's, then each waiter's that
/// came from the line, up to the last one served. Waiters are read last first.
async fn history(target: &Target, buyers: &[User], line: &Line) -> Vec<Seen> {
    let mut seen = Vec::new();
    for &(_, buyer) in line.waiting.iter().rev() {
        // A buyer skipped while a later one was served leaves a gap, which the fairness
        // check then finds: the recipients are not the first in line.
        if let Some(order) = order_for(target, buyers, buyer, &line.ticket, true).await {
            seen.push(order);
        }
    }
    seen.reverse();
    if let Some((buyer, _)) = &line.winner
        && let Some(order) = order_for(target, buyers, *buyer, &line.ticket, false).await
    {
        seen.insert(0, order);
    }
    seen
}

async fn order_for(
    target: &Target,
    buyers: &[User],
    buyer: usize,
    ticket: &str,
    from_line: bool,
) -> Option<Seen> {
    let url = format!("{}?limit=100", target.orders);
    let page: Value = target
        .get(&url, Some(&buyers[buyer]))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let source = if from_line { "waitlist" } else { "direct" };
    let o = page["items"]
        .as_array()?
        .iter()
        .find(|o| o["ticket"]["id"] == ticket && o["source"] == source)?;
    let time = |field: &str| timestamp(&o[field]);
    let lapsed = match (
        o["status"].as_str()?,
        time("cancelledAt"),
        time("expiresAt"),
    ) {
        ("cancelled", Some(at), Some(expires)) if o["cancelReason"] == "expired" => {
            Some((expires.min(at), true))
        }
        ("cancelled", Some(at), _) => Some((at, false)),
        _ => None,
    };
    Some(Seen {
        buyer,
        id: o["id"].as_str()?.to_string(),
        live: o["status"] == "created",
        created: time("createdAt")?,
        lapsed,
    })
}

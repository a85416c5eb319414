//! The overview as an HTML page, rendered on the server: no script, one small stylesheet,
//! tables that scroll sideways on a phone.

use std::fmt::Write;

use chrono::DateTime;

use super::{Head, Overview};

/// The whole page.
pub fn render(o: &Overview) -> String {
    let mut html = String::with_capacity(16 * 1024);
    html.push_str(HEAD);
    let _ = write!(
        html,
        "<h1>build-relay</h1><p class=muted>Read at {}{}</p>",
        stamp(o.generated_at),
        if o.public { " (public view)" } else { "" }
    );
    heads(&mut html, o);
    deploys(&mut html, o);
    pulls(&mut html, o);
    smokeys(&mut html, o);
    stalls_and_bridge(&mut html, o);
    deliveries(&mut html, o);
    html.push_str("<p class=muted>The same as JSON: <a href=\"status.json\">status.json</a></p></body></html>\n");
    html
}

/// The source and deploy heads, and whether they agree.
fn heads(html: &mut String, o: &Overview) {
    html.push_str("<h2>Heads</h2><table><tr><th>branch</th><th>commit</th><th>message</th><th>recorded</th></tr>");
    for (name, head) in [("source", &o.heads.source), ("deploy", &o.heads.deploy)] {
        match head {
            Some(Head {
                sha,
                message,
                age_seconds,
            }) => {
                let _ = write!(
                    html,
                    "<tr><td>{name}</td><td><code>{}</code></td><td>{}</td><td>{} ago</td></tr>",
                    esc(short(sha)),
                    esc(message.as_deref().unwrap_or("")),
                    duration(*age_seconds)
                );
            }
            None => {
                let _ = write!(
                    html,
                    "<tr><td>{name}</td><td colspan=3>not recorded yet</td></tr>"
                );
            }
        }
    }
    html.push_str("</table>");
    let _ = write!(
        html,
        "<p class={}>{}</p>",
        if o.heads.agree { "ok" } else { "warn" },
        if o.heads.agree {
            "Deploy is at the source branch's head."
        } else {
            "Deploy and the source branch differ (or one is not recorded yet)."
        }
    );
}

/// The newest deploy moves with their commits' CI and verdicts.
fn deploys(html: &mut String, o: &Overview) {
    html.push_str("<h2>Deploy moves</h2><table><tr><th>when</th><th>what</th><th>commit</th><th>CI</th><th>verdict sent</th></tr>");
    for d in &o.deploys {
        let verdict = match (&d.verdict, d.verdict_sent_at, d.verdict_sent_to) {
            (Some(state), Some(at), Some(n)) => {
                format!("{state} at {} to {n} connection(s)", stamp(at))
            }
            (Some(state), Some(at), None) => format!("{state} at {}", stamp(at)),
            (Some(state), None, _) => format!("{state}, not sent yet"),
            (None, _, _) => "none yet".into(),
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code> {}</td><td>{}</td><td>{}</td></tr>",
            stamp(d.at),
            esc(&d.outcome),
            esc(d.sha.as_deref().map(short).unwrap_or("")),
            esc(d.message.as_deref().unwrap_or("")),
            esc(&d.ci.join(", ")),
            esc(&verdict)
        );
    }
    empty(html, o.deploys.is_empty(), 5);
    html.push_str("</table>");
}

/// Open bot pull requests and the newest merge decisions.
fn pulls(html: &mut String, o: &Overview) {
    for (title, rows) in [
        ("Open bot pull requests", &o.open_pulls),
        ("Merge decisions", &o.merges),
    ] {
        let _ = write!(
            html,
            "<h2>{title}</h2><table><tr><th>PR</th><th>when</th><th>state</th><th>detail</th></tr>"
        );
        for p in rows {
            let _ = write!(
                html,
                "<tr><td>#{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                p.number,
                stamp(p.at),
                esc(&p.outcome),
                esc(&p.detail)
            );
        }
        empty(html, rows.is_empty(), 4);
        html.push_str("</table>");
    }
}

/// The connected Smokeys.
fn smokeys(html: &mut String, o: &Overview) {
    html.push_str("<h2>Connected Smokeys</h2><table><tr><th>key</th><th>connected since</th><th>last frame taken</th><th>frames taken</th></tr>");
    for s in &o.smokeys {
        let taken = match s.last_frame {
            Some(seq) if seq >= s.outbox_head => "all".to_string(),
            Some(seq) => format!("up to #{seq} of #{}", s.outbox_head),
            None => "none yet".to_string(),
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(s.key_name.as_deref().unwrap_or("(hidden)")),
            stamp(s.connected_since),
            s.last_post.map(stamp).unwrap_or_else(|| "never".into()),
            taken
        );
    }
    empty(html, o.smokeys.is_empty(), 4);
    html.push_str("</table>");
}

/// Watched stalls and the bridge's holder.
fn stalls_and_bridge(html: &mut String, o: &Overview) {
    html.push_str("<h2>Stalls and the metasmoke bridge</h2><table><tr><th>what</th><th>since</th><th>state</th></tr>");
    for s in &o.stalls {
        let _ = write!(
            html,
            "<tr><td>stall {}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.key),
            stamp(s.since),
            if s.alerted { "alerted" } else { "watched" }
        );
    }
    if let Some(b) = &o.bridge {
        // Each run takes the socket over within its first seconds: an older holder means
        // no run has subscribed since (metasmoke down, the key rejected, no bridge).
        let state = match o.generated_at - b.since {
            age if age <= 90 => "subscribed".to_string(),
            age => format!("no run has taken it over for {}", duration(age)),
        };
        let _ = write!(
            html,
            "<tr><td>bridge held by {}</td><td>{}</td><td>{}</td></tr>",
            esc(&b.holder),
            stamp(b.since),
            esc(&state)
        );
    }
    empty(html, o.stalls.is_empty() && o.bridge.is_none(), 3);
    html.push_str("</table>");
}

/// The newest deliveries.
fn deliveries(html: &mut String, o: &Overview) {
    html.push_str("<h2>Deliveries</h2><table><tr><th>when</th><th>event</th><th>delivery</th><th>outcome</th><th>took</th></tr>");
    for d in &o.deliveries {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{} ({})</td><td>{:.0} ms</td></tr>",
            stamp(d.at),
            esc(&d.event),
            esc(&d.delivery_id),
            esc(&d.outcome),
            d.status,
            d.duration_ms
        );
    }
    empty(html, o.deliveries.is_empty(), 5);
    html.push_str("</table>");
}

const HEAD: &str = "<!doctype html><html lang=en><head><meta charset=utf-8>\
<meta name=viewport content=\"width=device-width, initial-scale=1\">\
<title>build-relay status</title><style>\
body{font:15px/1.4 system-ui,sans-serif;margin:1em;max-width:70em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse;display:block;overflow-x:auto;max-width:100%}\
th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #ddd;vertical-align:top}\
code{font-size:.95em}.muted{color:#666}.ok{color:#176b2c}.warn{color:#a04000;font-weight:bold}\
</style></head><body>";

fn empty(html: &mut String, empty: bool, columns: usize) {
    if empty {
        let _ = write!(html, "<tr><td colspan={columns} class=muted>none</td></tr>");
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

fn stamp(at: i64) -> String {
    DateTime::from_timestamp(at, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M UTC")
        .to_string()
}

fn duration(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc(r#"<b>"x" & 'y'</b>"#),
            "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;"
        );
    }
}

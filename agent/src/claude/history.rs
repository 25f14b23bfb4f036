//! Past conversations, read from Claude Code's own transcripts:
//! `<CLAUDE_CONFIG_DIR>/projects/<folder>/<conversation id>.jsonl`, one JSON
//! entry per line.
//!
//! The folder name is a lossy encoding of the working directory, so it is
//! never decoded: the cwd comes from the entries themselves. Entries of
//! sub-agents (`isSidechain: true`) are not part of the conversation.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use dispatch_api::protocol::ConversationInfo;
use serde::Deserialize;
use serde_json::Value;

/// Longest title reported.
const MAX_TITLE_CHARS: usize = 120;

/// The fields of an entry the listing needs; everything else is skipped.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    #[serde(rename = "type")]
    kind: Option<String>,
    is_sidechain: Option<bool>,
    is_meta: Option<bool>,
    cwd: Option<String>,
    timestamp: Option<String>,
    custom_title: Option<String>,
    ai_title: Option<String>,
    last_prompt: Option<String>,
    summary: Option<Value>,
    message: Option<Message>,
}

#[derive(Debug, Default, Deserialize)]
struct Message {
    content: Option<Value>,
}

/// What the listing says about one transcript.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    pub title: String,
    pub cwd: Option<String>,
    /// Unix ms of the newest entry with a timestamp.
    pub updated: Option<i64>,
    pub messages: u32,
}

/// Whether `id` can name a transcript file (and nothing else).
pub fn is_valid_conversation_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Text a user typed, from a message's `content` (a string, or blocks of
/// which the text ones count; tool results are not prompts).
fn prompt_text(content: &Value) -> Option<String> {
    let text = match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => return None,
    };
    let t = text.trim();
    // Wrappers the CLI adds around commands and reminders are not prompts.
    if t.is_empty() || t.starts_with('<') {
        return None;
    }
    Some(t.to_owned())
}

/// `s` on one line, shortened to a title's length.
pub fn one_line(s: &str) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > MAX_TITLE_CHARS {
        let cut: String = flat.chars().take(MAX_TITLE_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// Days from 1970-01-01 to a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix ms of an RFC 3339 UTC timestamp as the CLI writes them
/// (`2026-01-02T03:04:05.678Z`); None for anything else.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let rest = s.get(19..)?;
    let (frac, zone) = match rest.strip_prefix('.') {
        Some(r) => {
            let digits = r.bytes().take_while(u8::is_ascii_digit).count();
            (&r[..digits], &r[digits..])
        }
        None => ("", rest),
    };
    if zone != "Z" {
        return None;
    }
    let ms = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0'));
    let days = days_from_civil(y, mo, d);
    Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + ms)
}

/// Reads one transcript's lines into its summary. Lines that are not JSON
/// are skipped; a transcript with no conversation entries gives None.
pub fn summarize<I: IntoIterator<Item = String>>(lines: I) -> Option<Summary> {
    let mut s = Summary::default();
    let (mut custom, mut ai, mut last_prompt, mut summary, mut first_prompt) =
        (None, None, None, None, None);
    let mut any = false;
    for line in lines {
        let Ok(e) = serde_json::from_str::<Entry>(&line) else {
            continue;
        };
        if e.is_sidechain == Some(true) {
            continue;
        }
        if let Some(t) = e.timestamp.as_deref().and_then(parse_timestamp) {
            s.updated = Some(s.updated.map_or(t, |u: i64| u.max(t)));
        }
        if s.cwd.is_none()
            && let Some(c) = &e.cwd
        {
            s.cwd = Some(c.clone());
        }
        if let Some(t) = e.custom_title.filter(|t| !t.trim().is_empty()) {
            custom = Some(t);
        }
        if let Some(t) = e.ai_title.filter(|t| !t.trim().is_empty()) {
            ai = Some(t);
        }
        if let Some(t) = e.last_prompt.filter(|t| !t.trim().is_empty()) {
            last_prompt = Some(t);
        }
        if let Some(Value::String(t)) = e.summary
            && !t.trim().is_empty()
        {
            summary = Some(t);
        }
        match e.kind.as_deref() {
            Some("user") | Some("assistant") if e.message.is_some() => {
                any = true;
                s.messages += 1;
                if first_prompt.is_none()
                    && e.kind.as_deref() == Some("user")
                    && e.is_meta != Some(true)
                {
                    first_prompt = e
                        .message
                        .as_ref()
                        .and_then(|m| m.content.as_ref())
                        .and_then(prompt_text);
                }
            }
            _ => {}
        }
    }
    if !any {
        return None;
    }
    // One stable name, the one the session's tab has: the user's own, else
    // the first prompt; never the latest prompt, which changes every turn.
    s.title = [custom, first_prompt, ai, summary, last_prompt]
        .into_iter()
        .flatten()
        .next()
        .map_or_else(|| "Untitled conversation".to_owned(), |t| one_line(&t));
    Some(s)
}

fn read_lines(path: &Path) -> impl Iterator<Item = String> {
    File::open(path)
        .ok()
        .into_iter()
        .flat_map(|f| BufReader::new(f).split(b'\n').map_while(Result::ok))
        .map(|l| String::from_utf8_lossy(&l).into_owned())
}

/// Every transcript file with a valid id: `projects/*/*.jsonl`.
fn transcript_files(config_dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(projects) = std::fs::read_dir(config_dir.join("projects")) else {
        return out;
    };
    for project in projects.flatten() {
        let Ok(files) = std::fs::read_dir(project.path()) else {
            continue;
        };
        for f in files.flatten() {
            let path = f.path();
            if path.extension().and_then(|e| e.to_str()) != Some("jsonl") || !path.is_file() {
                continue;
            }
            let Some(id) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if is_valid_conversation_id(id) {
                out.push((id.to_owned(), path.clone()));
            }
        }
    }
    out
}

/// `cwd` as the client sees paths: relative to the workspace root when inside it.
fn display_cwd(root: &Path, cwd: &str) -> String {
    match Path::new(cwd).strip_prefix(root) {
        Ok(r) if r.as_os_str().is_empty() => ".".to_owned(),
        Ok(r) => r.display().to_string(),
        Err(_) => cwd.to_owned(),
    }
}

/// Past conversations, newest first.
pub fn list(config_dir: &Path, root: &Path) -> Vec<ConversationInfo> {
    let mut out: Vec<ConversationInfo> = transcript_files(config_dir)
        .into_iter()
        .filter_map(|(id, path)| {
            let s = summarize(read_lines(&path))?;
            let updated = s.updated.unwrap_or_else(|| {
                std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as i64)
            });
            Some(ConversationInfo {
                id,
                title: s.title,
                cwd: s
                    .cwd
                    .map_or_else(|| ".".to_owned(), |c| display_cwd(root, &c)),
                updated,
                messages: s.messages,
            })
        })
        .collect();
    out.sort_by(|a, b| b.updated.cmp(&a.updated).then_with(|| a.id.cmp(&b.id)));
    out
}

/// The transcript file of conversation `id`, if there is one.
pub fn find(config_dir: &Path, id: &str) -> Option<PathBuf> {
    if !is_valid_conversation_id(id) {
        return None;
    }
    transcript_files(config_dir)
        .into_iter()
        .find(|(i, _)| i == id)
        .map(|(_, p)| p)
}

/// The absolute cwd recorded inside a transcript.
#[cfg(test)]
pub fn recorded_cwd(path: &Path) -> Option<String> {
    summarize(read_lines(path))?.cwd
}

/// A conversation's messages for the UI: its user, assistant and system
/// entries (no sidechains, no bookkeeping entries), oldest first. When they
/// pass `max_bytes`, the oldest are left out.
pub fn load(path: &Path, max_bytes: usize) -> Vec<Value> {
    let mut entries: Vec<(Value, usize)> = Vec::new();
    for line in read_lines(path) {
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v.get("isSidechain").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        if matches!(kind, "user" | "assistant" | "system") {
            entries.push((v, line.len()));
        }
    }
    let mut total = 0usize;
    let mut keep = entries.len();
    for (i, (_, n)) in entries.iter().enumerate().rev() {
        if total + n > max_bytes {
            break;
        }
        total += n;
        keep = i;
    }
    entries.drain(..keep);
    entries.into_iter().map(|(v, _)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(v: &[Value]) -> Vec<String> {
        v.iter().map(Value::to_string).collect()
    }

    fn user(text: &str, ts: &str) -> Value {
        json!({"type":"user","isSidechain":false,"cwd":"/w/sub","timestamp":ts,
               "message":{"role":"user","content":text}})
    }

    fn assistant(text: &str, ts: &str) -> Value {
        json!({"type":"assistant","isSidechain":false,"timestamp":ts,
               "message":{"role":"assistant","content":[{"type":"text","text":text}]}})
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            parse_timestamp("2026-11-24T05:14:14.396Z"),
            Some(1_795_497_254_396)
        );
        assert_eq!(
            parse_timestamp("2000-02-29T12:00:00.000Z"),
            Some(951_825_600_000)
        );
        for bad in [
            "",
            "yesterday",
            "2026-11-24 05:14:14Z",
            "2026-13-01T00:00:00Z",
            "2026-11-24T05:14:14+01:00",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn title_precedence() {
        let base = vec![
            json!({"type":"queue-operation","operation":"enqueue"}),
            user("first question", "2026-01-01T00:00:00Z"),
            assistant("answer", "2026-01-01T00:00:01Z"),
        ];
        let s = summarize(lines(&base)).unwrap();
        assert_eq!(s.title, "first question");
        assert_eq!(s.messages, 2);
        assert_eq!(s.cwd.as_deref(), Some("/w/sub"));
        assert_eq!(s.updated, parse_timestamp("2026-01-01T00:00:01Z"));

        // The name stays the first prompt's as the conversation goes on.
        let mut v = base.clone();
        v.push(json!({"type":"summary","summary":"A summary","leafUuid":"x"}));
        v.push(json!({"type":"last-prompt","lastPrompt":"latest prompt"}));
        v.push(json!({"type":"ai-title","aiTitle":"AI title"}));
        v.push(user("second question", "2026-01-01T00:00:02Z"));
        assert_eq!(summarize(lines(&v)).unwrap().title, "first question");
        // Without a prompt of its own: AI title, then summary.
        let bare = |extra: Vec<serde_json::Value>| {
            let mut b = vec![assistant("answer", "2026-01-01T00:00:01Z")];
            b.extend(extra);
            summarize(lines(&b)).unwrap().title
        };
        assert_eq!(
            bare(vec![
                json!({"type":"summary","summary":"A summary","leafUuid":"x"})
            ]),
            "A summary"
        );
        assert_eq!(
            bare(vec![json!({"type":"ai-title","aiTitle":"AI title"})]),
            "AI title"
        );
        // Renamed: the user's name wins over everything.
        v.push(json!({"type":"custom-title","customTitle":"Mine"}));
        v.push(json!({"type":"ai-title","aiTitle":"Later AI title"}));
        assert_eq!(summarize(lines(&v)).unwrap().title, "Mine");
    }

    #[test]
    fn sidechains_meta_and_wrappers_are_not_the_conversation() {
        let v = vec![
            json!({"type":"user","isSidechain":true,"cwd":"/elsewhere","timestamp":"2030-01-01T00:00:00Z",
                   "message":{"content":"sub-agent prompt"}}),
            json!({"type":"user","isMeta":true,"message":{"content":"meta text"}}),
            json!({"type":"user","message":{"content":"<command-name>/clear</command-name>"}}),
            json!({"type":"user","message":{"content":[{"type":"tool_result","content":"x"}]}}),
            user("  the real\nprompt ", "2026-01-01T00:00:00Z"),
        ];
        let s = summarize(lines(&v)).unwrap();
        assert_eq!(s.title, "the real prompt");
        assert_eq!(s.cwd.as_deref(), Some("/w/sub"));
        assert_eq!(s.updated, parse_timestamp("2026-01-01T00:00:00Z"));
        assert_eq!(s.messages, 4);
    }

    #[test]
    fn no_conversation_no_summary_and_garbage_is_skipped() {
        assert_eq!(
            summarize(vec!["not json".to_owned(), "{}".to_owned()]),
            None
        );
        let long = "word ".repeat(100);
        let s = summarize(vec![
            "garbage".to_owned(),
            user(&long, "2026-01-01T00:00:00Z").to_string(),
        ])
        .unwrap();
        assert_eq!(s.title.chars().count(), MAX_TITLE_CHARS);
        assert!(s.title.ends_with('…'));
    }

    #[test]
    fn lists_finds_and_loads_transcripts_from_files() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join("claude");
        // The folder name says nothing trustworthy; the cwd inside does.
        let proj = cfg.join("projects").join("-misleading-name");
        std::fs::create_dir_all(&proj).unwrap();
        let a = vec![
            json!({"type":"user","cwd":"/ws/app","timestamp":"2026-01-01T00:00:00Z","message":{"content":"older"}}),
            assistant("ok", "2026-01-01T00:00:05Z"),
            json!({"type":"attachment","attachment":{}}),
            json!({"type":"user","isSidechain":true,"message":{"content":"side"}}),
        ];
        std::fs::write(proj.join("aaaa-1.jsonl"), lines(&a).join("\n")).unwrap();
        let b = vec![
            json!({"type":"user","cwd":"/ws","timestamp":"2026-02-01T00:00:00Z","message":{"content":"newer"}}),
        ];
        std::fs::write(proj.join("bbbb-2.jsonl"), lines(&b).join("\n") + "\n").unwrap();
        std::fs::write(proj.join("bad name.jsonl"), "{}").unwrap();
        std::fs::write(proj.join("notes.txt"), "x").unwrap();

        let got = list(&cfg, Path::new("/ws"));
        assert_eq!(got.len(), 2);
        assert_eq!(
            (
                got[0].id.as_str(),
                got[0].title.as_str(),
                got[0].cwd.as_str()
            ),
            ("bbbb-2", "newer", ".")
        );
        assert_eq!(
            (got[1].id.as_str(), got[1].cwd.as_str(), got[1].messages),
            ("aaaa-1", "app", 2)
        );

        let path = find(&cfg, "aaaa-1").unwrap();
        assert_eq!(recorded_cwd(&path).as_deref(), Some("/ws/app"));
        assert_eq!(find(&cfg, "../x"), None);
        assert_eq!(find(&cfg, "missing"), None);
        let entries = load(&path, 1 << 20);
        assert_eq!(
            entries.len(),
            2,
            "only user/assistant, no sidechain or attachment"
        );
        assert_eq!(entries[0]["message"]["content"], "older");
        let newest_only = load(&path, 150);
        assert_eq!(newest_only.len(), 1);
        assert_eq!(newest_only[0]["type"], "assistant");
        assert!(list(&tmp.path().join("nothing"), Path::new("/ws")).is_empty());
    }
}

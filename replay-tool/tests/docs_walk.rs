//! Every fenced block of README.md and docs/*.md, checked against the real binaries: the docs'
//! commands run as a reader would run them, in order, in one shell per document, on a fresh
//! store served by a real `crm-api serve` on a free port.
//!
//! A block's info string says what it is:
//! - `sh` (or `bash`): run. `localhost:8080` becomes the server's address, `crm-api` and
//!   `crm-replay` are the built binaries (beside this test's executable), the working
//!   directory holds the server's `crm-data/`, and `KEY` is its admin key. The block must end
//!   with exit 0. An answer written under a curl command as `# → 201 {"field": …}` is checked:
//!   that curl call's HTTP status, and each quoted `"field":` of the answer in its body.
//! - `sh illustrative` (any language followed by `illustrative`): shown, not run (placeholders,
//!   minutes-long benchmarks, a PostgreSQL URL, store-wide changes).
//! - `json`: must parse as JSON; an example event (`type` and `data`) must pass the catalog's
//!   validation.
//! - `text` or no info string: prose, diagrams, outputs.
//!
//! Any other info string fails the test, so a new block is either run or marked. The test counts
//! every kind and asserts that every block not marked ran.
//!
//! It needs `crm-api` built beside `crm-replay` (`cargo test --workspace` builds both; alone:
//! `cargo build -p crm-api` first).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crm_tests::served::Served;

const REPLAY: &str = env!("CARGO_BIN_EXE_crm-replay");
/// A document's blocks together may take this long.
const DOC_TIMEOUT_SECS: u32 = 120;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Run,
    Illustrative,
    Json,
    Text,
}

#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    kind: Kind,
    text: String,
}

/// An answer a doc shows under a curl command.
#[derive(Debug)]
struct Expected {
    /// The block (index among the document's runnable blocks) and the line in the document.
    block: usize,
    line: usize,
    /// Which curl call of the block it follows (0-based).
    call: usize,
    status: u16,
    fields: Vec<String>,
    /// `"field": value` pairs with a literal value (not `…`): some object of the answer holds
    /// each.
    values: Vec<(String, serde_json::Value)>,
}

fn kind(info: &str) -> Result<Kind, String> {
    let mut words = info.split_whitespace();
    let language = words.next().unwrap_or("");
    if words.any(|w| w == "illustrative") {
        return Ok(Kind::Illustrative);
    }
    match language {
        "sh" | "bash" => Ok(Kind::Run),
        "json" => Ok(Kind::Json),
        "" | "text" => Ok(Kind::Text),
        other => Err(format!(
            "info string {other:?}: use sh (run), sh illustrative, json or text"
        )),
    }
}

fn blocks(doc: &str, text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(usize, Kind, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match &mut open {
            None if fence => {
                let info = line.trim_start().trim_start_matches('`');
                let kind = kind(info).unwrap_or_else(|e| panic!("{doc}:{}: {e}", i + 1));
                open = Some((i + 1, kind, String::new()));
            }
            None => {}
            Some((start, kind, body)) if fence => {
                out.push(Block {
                    line: *start,
                    kind: *kind,
                    text: std::mem::take(body),
                });
                open = None;
            }
            Some((_, _, body)) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    assert!(open.is_none(), "{doc}: a code block is never closed");
    out
}

/// Whether a line of shell calls curl (outside a comment).
fn calls_curl(line: &str) -> bool {
    let code = line.split(" #").next().unwrap_or("");
    !line.trim_start().starts_with('#')
        && (code.trim_start().starts_with("curl ")
            || code.contains("$(curl ")
            || code.contains(" curl "))
}

fn expectations(block_index: usize, block: &Block) -> Vec<Expected> {
    let mut out = Vec::new();
    let mut calls = 0;
    for (i, line) in block.text.lines().enumerate() {
        if calls_curl(line) {
            calls += 1;
        }
        let Some(answer) = line.trim_start().strip_prefix("# →") else {
            continue;
        };
        let answer = answer.trim();
        let doc_line = block.line + 1 + i;
        let status: u16 = answer
            .get(..3)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("line {doc_line}: an answer starts with its status"));
        assert!(calls > 0, "line {doc_line}: an answer under no curl call");
        let fields = answer
            .split('"')
            .collect::<Vec<_>>()
            .windows(2)
            .enumerate()
            // Odd pieces are inside quotes; a field is a quoted piece followed by `:`.
            .filter(|(n, pair)| n % 2 == 1 && pair[1].trim_start().starts_with(':'))
            .map(|(_, pair)| pair[0].to_owned())
            .collect();
        out.push(Expected {
            block: block_index,
            line: doc_line,
            call: calls - 1,
            status,
            fields,
            values: literal_values(answer),
        });
    }
    out
}

/// The `"field": value` pairs of an answer as the docs show it whose value is a literal: a
/// number, `true`, `false`, `null`, or a string without `…`.
fn literal_values(answer: &str) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    let mut rest = answer;
    while let Some(open) = rest.find('"') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('"') else { break };
        let name = &after[..close];
        let tail = &after[close + 1..];
        let Some(value) = tail.trim_start().strip_prefix(':') else {
            // A string value, not a field: go on after it.
            rest = tail;
            continue;
        };
        let value = value.trim_start();
        if value.starts_with(['[', '{']) {
            // An object or array: its own fields follow.
            rest = value;
            continue;
        }
        let literal = if let Some(text) = value.strip_prefix('"') {
            let end = text.find('"').unwrap_or(text.len());
            let text = &text[..end];
            rest = &value[(end + 2).min(value.len())..];
            (!text.contains('…')).then(|| serde_json::Value::String(text.to_owned()))
        } else {
            let end = value
                .find(|c: char| c == ',' || c == '}' || c == ']' || c.is_whitespace())
                .unwrap_or(value.len());
            rest = &value[end..];
            serde_json::from_str::<serde_json::Value>(&value[..end])
                .ok()
                .filter(|v| !v.is_object() && !v.is_array())
        };
        if let Some(literal) = literal {
            out.push((name.to_owned(), literal));
        }
    }
    out
}

/// Whether some object within `value` holds `name: expected`.
fn holds(value: &serde_json::Value, name: &str, expected: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            map.get(name) == Some(expected) || map.values().any(|v| holds(v, name, expected))
        }
        serde_json::Value::Array(items) => items.iter().any(|v| holds(v, name, expected)),
        _ => false,
    }
}

/// A `crm-api serve` on a fresh store in `home/crm-data`, stopped when dropped.
fn clean_env(command: &mut Command) -> &mut Command {
    for name in [
        "CRM_STORE",
        "CRM_DATA_DIR",
        "CRM_MASTER_KEY",
        "CRM_MASTER_KEY_FILE",
        "CRM_LISTEN",
        "CRM_LOG_FORMAT",
    ] {
        command.env_remove(name);
    }
    command.env("NO_COLOR", "1")
}

fn start_server(api: &Path, home: &Path) -> Served {
    let admin_key = home.join("crm-data/admin.key");
    Served::start(
        clean_env(Command::new(api).args(["serve", "--listen", "127.0.0.1:0"])).current_dir(home),
        || admin_key.exists(),
    )
}

/// The shell every document's blocks run in, in order: a curl that records each call's
/// status and body (for the answers the docs show), and a marker before each block.
const PRELUDE: &str = r#"set -eo pipefail
echo 0 > "$WALK_DIR/calls"
curl() {
  local n rc=0
  n=$(( $(cat "$WALK_DIR/calls") + 1 ))
  echo "$n" > "$WALK_DIR/calls"
  command curl -D "$WALK_DIR/head.$n" "$@" > "$WALK_DIR/body.$n" || rc=$?
  cat "$WALK_DIR/body.$n"
  echo "$WALK_BLOCK $n" >> "$WALK_DIR/calls.log"
  # A live stream that --max-time ends is what such an example asks for.
  if [ "$rc" = 28 ] && [[ " $* " == *" --max-time "* ]]; then rc=0; fi
  return "$rc"
}
"#;

/// The status of the last response in a `curl -D` header file.
fn status_of(head: &str) -> Option<u16> {
    head.lines()
        .rfind(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
}

#[derive(Debug, Default)]
struct Counts {
    run: usize,
    illustrative: usize,
    json: usize,
    text: usize,
    answers: usize,
    values: usize,
    /// JSON blocks that are example events, validated by the catalog.
    events: usize,
}

fn walk(doc: &str, text: &str, api: &Path, bin_dir: &Path, counts: &mut Counts) {
    let blocks = blocks(doc, text);
    for block in &blocks {
        match block.kind {
            Kind::Run => {}
            Kind::Illustrative => counts.illustrative += 1,
            Kind::Text => counts.text += 1,
            Kind::Json => {
                let value =
                    serde_json::from_str::<serde_json::Value>(&block.text).unwrap_or_else(|e| {
                        panic!("{doc}:{}: the json block does not parse: {e}", block.line)
                    });
                // An example event must be one the catalog accepts.
                if let (Some(event_type), Some(data)) = (value["type"].as_str(), value.get("data"))
                {
                    crm_core::catalog::DomainEvent::parse(event_type, data).unwrap_or_else(|e| {
                        panic!("{doc}:{}: the catalog refuses the example: {e}", block.line)
                    });
                    counts.events += 1;
                }
                counts.json += 1;
            }
        }
    }
    let runnable: Vec<&Block> = blocks.iter().filter(|b| b.kind == Kind::Run).collect();
    if runnable.is_empty() {
        return;
    }
    let home = tempfile::tempdir().expect("home");
    let walk_dir = tempfile::tempdir().expect("walk dir");
    let server = start_server(api, home.path());
    let mut script = String::from(PRELUDE);
    let mut expected = Vec::new();
    for (i, block) in runnable.iter().enumerate() {
        expected.extend(expectations(i, block));
        let body = block.text.replace("localhost:8080", &server.address);
        let _ = write!(
            script,
            "\nWALK_BLOCK={i}; echo {i} > \"$WALK_DIR/reached\"\n{body}"
        );
    }
    script.push_str("\necho done > \"$WALK_DIR/reached\"\n");
    let key = std::fs::read_to_string(home.path().join("crm-data/admin.key")).expect("admin key");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = clean_env(Command::new("timeout").arg(DOC_TIMEOUT_SECS.to_string()))
        .args(["bash", "-c", &script])
        .current_dir(home.path())
        .env("PATH", path)
        .env("KEY", key.trim())
        .env("WALK_DIR", walk_dir.path())
        .env("CRM_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    let reached = std::fs::read_to_string(walk_dir.path().join("reached")).unwrap_or_default();
    if !output.status.success() || reached.trim() != "done" {
        let block = reached
            .trim()
            .parse::<usize>()
            .ok()
            .and_then(|i| runnable.get(i));
        let server_log = server.log();
        panic!(
            "{doc}: the block at line {} failed ({}):\n{}\n--- stdout:\n{}\n--- stderr:\n{}\n--- server:\n{}",
            block.map_or(0, |b| b.line),
            output.status,
            block.map_or("", |b| b.text.as_str()),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            server_log,
        );
    }
    counts.run += runnable.len();

    // Each block's curl calls, in order.
    let mut calls: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let log = std::fs::read_to_string(walk_dir.path().join("calls.log")).unwrap_or_default();
    for line in log.lines() {
        let mut parts = line.split_whitespace();
        if let (Some(block), Some(n)) = (parts.next(), parts.next()) {
            calls
                .entry(block.parse().expect("block"))
                .or_default()
                .push(n.to_owned());
        }
    }
    let mut wrong = Vec::new();
    for answer in &expected {
        let Some(n) = calls.get(&answer.block).and_then(|c| c.get(answer.call)) else {
            wrong.push(format!("{doc}:{}: its curl call never ran", answer.line));
            continue;
        };
        let head =
            std::fs::read_to_string(walk_dir.path().join(format!("head.{n}"))).unwrap_or_default();
        let body =
            std::fs::read_to_string(walk_dir.path().join(format!("body.{n}"))).unwrap_or_default();
        let status = status_of(&head);
        let missing: Vec<&String> = answer
            .fields
            .iter()
            .filter(|field| !body.contains(&format!("\"{field}\"")))
            .collect();
        // Values are checked in JSON answers (a live stream's is not one document).
        let unlike: Vec<String> = match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(json) => answer
                .values
                .iter()
                .filter(|(name, value)| !holds(&json, name, value))
                .map(|(name, value)| format!("{name}: {value}"))
                .collect(),
            Err(_) => Vec::new(),
        };
        if status != Some(answer.status) || !missing.is_empty() || !unlike.is_empty() {
            wrong.push(format!(
                "{doc}:{}: expected {} with {:?}, got {status:?} without {missing:?}, \
                 not holding {unlike:?}: {body}",
                answer.line, answer.status, answer.fields
            ));
        }
        counts.values += answer.values.len();
        counts.answers += 1;
    }
    assert!(
        wrong.is_empty(),
        "answers unlike the docs':\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_command_and_code_block_of_the_docs_runs_or_is_marked_illustrative() {
    let bin_dir = PathBuf::from(REPLAY)
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let api = bin_dir.join("crm-api");
    assert!(
        api.exists(),
        "{} is missing: `cargo test --workspace` builds it, else `cargo build -p crm-api`",
        api.display()
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    let mut docs = vec![root.join("README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    docs.extend(more);

    let mut counts = Counts::default();
    let mut per_doc = Vec::new();
    for doc in &docs {
        let name = doc
            .strip_prefix(root)
            .expect("inside")
            .display()
            .to_string();
        let text = std::fs::read_to_string(doc).expect("read doc");
        let before = counts.run;
        walk(&name, &text, &api, &bin_dir, &mut counts);
        per_doc.push((name, counts.run - before));
    }
    eprintln!("docs walked: {counts:?}; runnable blocks per document: {per_doc:?}");
    // The walk found what the docs hold: the README's and the API tour's blocks ran, and
    // answers were checked (a parser that found nothing would pass otherwise).
    let ran = |name: &str| per_doc.iter().find(|(n, _)| n == name).map(|(_, r)| *r);
    assert!(ran("README.md").is_some_and(|r| r >= 3), "{per_doc:?}");
    assert!(ran("docs/api.md").is_some_and(|r| r >= 10), "{per_doc:?}");
    assert!(counts.answers >= 10 && counts.values >= 30, "{counts:?}");
    assert!(
        counts.json >= 20 && counts.events >= 28 && counts.illustrative >= 3,
        "{counts:?}"
    );
}

#[test]
fn an_answer_as_the_docs_show_it_yields_its_fields_and_literal_values() {
    let answer = r#"200 {"events": [{"index": 0, "id": …, "duplicate": false}], "detail": "a: b", "note": "x …", "win_rate": null}"#;
    let block = Block {
        line: 10,
        kind: Kind::Run,
        text: format!("curl -s localhost:8080/v1/events\n# → {answer}\n"),
    };
    let expected = expectations(0, &block);
    assert_eq!(expected.len(), 1);
    assert_eq!(expected[0].status, 200);
    assert_eq!(expected[0].line, 12);
    assert_eq!(
        expected[0].fields,
        [
            "events",
            "index",
            "id",
            "duplicate",
            "detail",
            "note",
            "win_rate"
        ]
    );
    assert_eq!(
        expected[0].values,
        vec![
            ("index".to_owned(), serde_json::json!(0)),
            ("duplicate".to_owned(), serde_json::json!(false)),
            ("detail".to_owned(), serde_json::json!("a: b")),
            ("win_rate".to_owned(), serde_json::Value::Null),
        ]
    );
    let body = serde_json::json!({"events": [{"index": 0, "duplicate": false}], "detail": "a: b", "win_rate": null});
    assert!(expected[0].values.iter().all(|(n, v)| holds(&body, n, v)));
    assert!(!holds(&body, "index", &serde_json::json!(1)));
}

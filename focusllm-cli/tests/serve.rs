//! `focusllm serve` with real clients: the binary is started on the tiny LLaMA fixture on a port
//! the system chooses, then called with raw HTTP over TCP, with `curl`, and with the official
//! `openai` Python package (`tests/openai_client.py`). Answers are compared with the library's
//! greedy answer under the same reading policy ([`Reader`]).
//!
//! The Python and curl parts skip, saying why, where those tools are missing, and fail instead
//! under `FOCUSLLM_TEST_STRICT=1`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use focusllm::{ChatMessage, FinishReason, Sampling};
use focusllm_cli::{FocusArgs, ModelArgs, Reader};
use focusllm_testdata::{fixture_dir, skip_or_fail};
use serde_json::{json, Value};

/// The fixture served, and the name the server gives it (the directory's name).
const MODEL: &str = "tiny-llama";

/// One worker thread on both sides, so that the server's and the test's answers are computed
/// the same way.
const THREADS: &str = "1";

const SYSTEM: &str = "You answer in one short sentence.";
const QUESTION: &str = "Where is the archive kept, and who holds its key?";

/// A running `focusllm serve`, killed when dropped (and its stderr shown if the test failed).
struct Server {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts the binary on the fixture with `extra` flags and waits for its `listening on` line.
    fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_focusllm"))
            .arg("serve")
            .arg("--model")
            .arg(fixture_dir(MODEL))
            .args(["--no-adapter", "--threads", THREADS, "--port", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start focusllm serve");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut server = Server { child, port: 0, log };
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("focusllm serve printed no `listening on` line; stderr:\n{}", server.stderr()));
        let port = line
            .strip_prefix("listening on http://")
            .and_then(|address| address.rsplit(':').next())
            .and_then(|port| port.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("unexpected first line of focusllm serve: {line:?}"));
        assert_ne!(port, 0, "the server printed port 0");
        server.port = port;
        server
    }

    fn stderr(&self) -> String {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn health(&self) -> Value {
        let reply = http(self.port, "GET", "/health", None, "");
        assert_eq!(reply.status, 200, "GET /health: {}", reply.body);
        reply.json()
    }

    /// Polls `/health` until `ready` holds of it, for at most `seconds`; returns the last answer.
    fn wait_health(&self, seconds: u64, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let health = self.health();
            if ready(&health) || Instant::now() > deadline {
                return health;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- focusllm serve stderr ---\n{}", self.stderr());
        }
    }
}

/// An HTTP answer.
struct Reply {
    status: u16,
    headers: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

fn send(port: u16, method: &str, path: &str, content_type: Option<&str>, body: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the server");
    stream.set_read_timeout(Some(Duration::from_secs(120))).expect("set a read timeout");
    let content_type = content_type.map_or(String::new(), |t| format!("Content-Type: {t}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send the request");
    stream
}

/// One request over a fresh connection; the answer read to its end.
fn http(port: u16, method: &str, path: &str, content_type: Option<&str>, body: &str) -> Reply {
    let mut stream = send(port, method, path, content_type, body);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the answer");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP header in {raw:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status line {head:?}"));
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(rest) } else { rest.to_string() };
    Reply { status, headers: head.to_string(), body }
}

/// A chunked HTTP body, joined.
fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}

fn post_json(port: u16, path: &str, body: &Value) -> Reply {
    http(port, "POST", path, Some("application/json"), &body.to_string())
}

/// The `data:` payloads of a server-sent event stream that parse as JSON, and whether it ended
/// with `[DONE]`.
fn sse_events(body: &str) -> (Vec<Value>, bool) {
    let data: Vec<&str> = body.lines().filter_map(|line| line.strip_prefix("data: ")).collect();
    let done = data.last() == Some(&"[DONE]");
    (data.iter().filter_map(|d| serde_json::from_str(d).ok()).collect(), done)
}

/// The text of a streamed chat answer and its finish reason.
fn streamed_text(events: &[Value]) -> (String, Option<String>) {
    let mut text = String::new();
    let mut finish = None;
    for event in events {
        assert!(event.get("error").is_none(), "the stream failed: {event}");
        for choice in event["choices"].as_array().into_iter().flatten() {
            text.push_str(choice["delta"]["content"].as_str().or(choice["text"].as_str()).unwrap_or(""));
            if let Some(reason) = choice["finish_reason"].as_str() {
                finish = Some(reason.to_string());
            }
        }
    }
    (text, finish)
}

/// The library's answer to a prompt under the serving policy: text, OpenAI finish reason, prompt
/// and answer lengths in tokens.
struct Expected {
    text: String,
    finish: &'static str,
    prompt_tokens: usize,
    completion_tokens: usize,
    reading: String,
}

fn reader() -> Reader {
    let model = ModelArgs {
        model: Some(fixture_dir(MODEL)),
        no_adapter: true,
        threads: vec![THREADS.parse().unwrap()],
        ..ModelArgs::default()
    };
    Reader::load(&model, &FocusArgs::default()).expect("load the fixture")
}

fn greedy(reader: &Reader, ids: &[u32], max_tokens: usize) -> Expected {
    let options = reader.options(ids.len(), max_tokens, Sampling::greedy(), None, None);
    let mut stream = reader.llm().generate_ids(ids, &options).expect("generate");
    let mut text = String::new();
    let mut completion_tokens = 0;
    for token in stream.by_ref() {
        text.push_str(&token.expect("a token").text);
        completion_tokens += 1;
    }
    let finish = match stream.finish_reason() {
        Some(FinishReason::MaxTokens) => "length",
        _ => "stop",
    };
    Expected { text, finish, prompt_tokens: ids.len(), completion_tokens, reading: reader.describe(ids.len()) }
}

fn chat_expected(reader: &Reader, user: &str, max_tokens: usize) -> Expected {
    let ids = reader.chat_ids(&[ChatMessage::new("system", SYSTEM), ChatMessage::new("user", user)]).expect("chat ids");
    greedy(reader, &ids, max_tokens)
}

fn chat_body(user: &str, max_tokens: usize, stream: bool) -> Value {
    json!({
        "model": MODEL,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
        "some_unknown_field": {"ignored": true},
    })
}

/// A document long enough that the fixture's policy reads it with FocusLLM (by retrieval).
fn long_document() -> String {
    let mut text = String::new();
    for i in 0..60 {
        text.push_str(&format!("Shelf {i} of the archive holds the ledgers of year {}. ", 1900 + i));
    }
    text.push_str("The archive is kept in the cellar and the porter holds its key.\n\n");
    text.push_str(QUESTION);
    text
}

/// Whether `python3` can import the `openai` package.
fn python_openai() -> bool {
    Command::new("python3")
        .args(["-c", "import openai"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn client_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py")
}

/// Runs `tests/openai_client.py` against `server` with `args` and `--json`; its parsed output.
fn openai_client(server: &Server, args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(client_script())
        .args(["--base-url", &format!("{}/v1", server.url()), "--model", MODEL, "--json"])
        .args(args)
        .env("PYTHONIOENCODING", "utf-8")
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai_client.py {args:?} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("openai_client.py printed no JSON ({e}): {stdout}"))
}

fn assert_matches(what: &str, got: &Value, expected: &Expected, usage: bool) {
    assert_eq!(got["text"].as_str(), Some(expected.text.as_str()), "{what}: text differs from the library's");
    assert_eq!(got["finish_reason"].as_str(), Some(expected.finish), "{what}: finish reason");
    if usage {
        assert_eq!(got["usage"]["prompt_tokens"], json!(expected.prompt_tokens), "{what}: usage {}", got["usage"]);
        assert_eq!(got["usage"]["completion_tokens"], json!(expected.completion_tokens), "{what}: usage");
        assert_eq!(got["usage"]["total_tokens"], json!(expected.prompt_tokens + expected.completion_tokens));
    }
}

/// (a) The official client, streaming and not, gets the library's greedy answer, on a short
/// question (plain attention) and on a long document (read with FocusLLM), on both endpoints.
#[test]
fn openai_client_gets_the_library_answer() {
    const TEST: &str = "openai_client_gets_the_library_answer";
    let reader = reader();
    let short = chat_expected(&reader, QUESTION, 24);
    assert!(!short.text.is_empty(), "the fixture's greedy answer is empty: pick another question");
    let document = long_document();
    let long = chat_expected(&reader, &document, 16);
    assert!(long.reading.contains("FocusLLM"), "the long document is not read with FocusLLM: {}", long.reading);

    let server = Server::start(&[]);

    // Raw HTTP first, so that this part runs without Python.
    let reply = post_json(server.port, "/v1/chat/completions", &chat_body(QUESTION, 24, false));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["object"], "chat.completion");
    assert!(answer["id"].as_str().is_some_and(|id| id.starts_with("chatcmpl-")), "{answer}");
    assert_eq!(answer["model"], MODEL);
    assert_eq!(answer["choices"][0]["message"]["role"], "assistant");
    let got = json!({
        "text": answer["choices"][0]["message"]["content"],
        "finish_reason": answer["choices"][0]["finish_reason"],
        "usage": answer["usage"],
    });
    assert_matches("raw non-streaming chat", &got, &short, true);

    let reply = post_json(server.port, "/v1/chat/completions", &chat_body(QUESTION, 24, true));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.headers.to_ascii_lowercase().contains("content-type: text/event-stream"), "{}", reply.headers);
    let (events, done) = sse_events(&reply.body);
    assert!(done, "the stream did not end with data: [DONE]: {}", reply.body);
    assert!(events.iter().all(|e| e["object"] == "chat.completion.chunk"), "{}", reply.body);
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let (text, finish) = streamed_text(&events);
    assert_eq!((text.as_str(), finish.as_deref()), (short.text.as_str(), Some(short.finish)), "raw streaming chat");

    // The long document twice: the second request finds every chunk the first one read in the
    // chunk cache, and still gets the library's answer (read without the cache).
    for round in 0..2 {
        let reply = post_json(server.port, "/v1/chat/completions", &chat_body(&document, 16, false));
        assert_eq!(reply.status, 200, "{}", reply.body);
        let answer = reply.json();
        let text = answer["choices"][0]["message"]["content"].as_str();
        assert_eq!(text, Some(long.text.as_str()), "raw chat, long document, round {round}");
    }
    let cache = &server.health()["chunk_cache"];
    let (hits, misses) = (cache["hits"].as_u64().unwrap(), cache["misses"].as_u64().unwrap());
    assert!(misses > 0 && hits == misses, "the second request did not find the first one's chunks: {cache}");
    assert!(cache["bytes"].as_u64().unwrap() <= cache["limit_bytes"].as_u64().unwrap(), "{cache}");

    let models = http(server.port, "GET", "/v1/models", None, "").json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], MODEL);

    if !python_openai() {
        skip_or_fail(
            TEST,
            "python3 with the `openai` package is missing (pip install openai); the raw HTTP checks passed",
        );
        return;
    }
    let ask = |user: &str, max_tokens: usize, stream: bool| {
        let file = std::env::temp_dir().join(format!("focusllm-serve-test-{}-{}.txt", std::process::id(), user.len()));
        std::fs::write(&file, user).expect("write the message");
        let max_tokens = max_tokens.to_string();
        let mut args = vec!["--system", SYSTEM, "--user-file", file.to_str().unwrap(), "--max-tokens", &max_tokens];
        if !stream {
            args.push("--no-stream");
        }
        let got = openai_client(&server, &args);
        let _ = std::fs::remove_file(&file);
        got
    };
    assert_matches("openai streaming chat", &ask(QUESTION, 24, true), &short, true);
    assert_matches("openai non-streaming chat", &ask(QUESTION, 24, false), &short, true);
    assert_matches("openai streaming chat, long document", &ask(&document, 16, true), &long, true);
    assert_matches("openai non-streaming chat, long document", &ask(&document, 16, false), &long, true);

    // /v1/completions: the prompt's text, tokenised as the library tokenises it.
    let prompt = "The archive is kept in the";
    let ids = reader.llm().tokenizer().encode(prompt).expect("encode");
    let completion = greedy(&reader, &ids, 12);
    for stream in [true, false] {
        let mut args = vec!["--endpoint", "completions", "--prompt", prompt, "--max-tokens", "12"];
        if !stream {
            args.push("--no-stream");
        }
        assert_matches(
            &format!("openai completions (stream {stream})"),
            &openai_client(&server, &args),
            &completion,
            true,
        );
    }
}

/// (b) Two streamed requests at once both complete with the library's answer: raw HTTP from two
/// threads, then the official client's async API.
#[test]
fn concurrent_streams_complete() {
    const TEST: &str = "concurrent_streams_complete";
    let reader = reader();
    let expected = chat_expected(&reader, QUESTION, 48);
    let server = Server::start(&["--max-concurrent", "2"]);
    let port = server.port;
    let threads: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let reply = post_json(port, "/v1/chat/completions", &chat_body(QUESTION, 48, true));
                assert_eq!(reply.status, 200, "{}", reply.body);
                let (events, done) = sse_events(&reply.body);
                assert!(done, "a concurrent stream did not end with [DONE]: {}", reply.body);
                streamed_text(&events)
            })
        })
        .collect();
    for thread in threads {
        let (text, finish) = thread.join().expect("a client thread panicked");
        assert_eq!((text.as_str(), finish.as_deref()), (expected.text.as_str(), Some(expected.finish)));
    }
    let health = server.wait_health(10, |h| h["active"] == 0);
    assert_eq!((health["completed"].as_u64(), health["active"].as_u64()), (Some(2), Some(0)), "{health}");

    if !python_openai() {
        skip_or_fail(
            TEST,
            "python3 with the `openai` package is missing (pip install openai); the raw HTTP checks passed",
        );
        return;
    }
    let answers =
        openai_client(&server, &["--user", QUESTION, "--system", SYSTEM, "--max-tokens", "48", "--concurrent", "2"]);
    let answers = answers.as_array().expect("a list of answers");
    assert_eq!(answers.len(), 2);
    for answer in answers {
        assert_matches("openai concurrent stream", answer, &expected, true);
    }
}

/// The body of a generation that cannot end before its client goes away: past the end token, up
/// to a million tokens.
fn endless(stream: bool) -> Value {
    let mut body = chat_body(QUESTION, 1_000_000, stream);
    body["ignore_eos"] = json!(true);
    body
}

/// Opens a streamed endless generation and reads until its first generated text arrives.
fn stream_until_first_token(port: u16) -> TcpStream {
    let mut stream = send(port, "POST", "/v1/chat/completions", Some("application/json"), &endless(true).to_string());
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut buffer).expect("read the stream");
        assert!(n > 0, "the stream ended early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buffer[..n]);
        let (events, _) = sse_events(&String::from_utf8_lossy(&seen));
        if events.iter().any(|e| e["choices"][0]["delta"]["content"].as_str().is_some_and(|t| !t.is_empty())) {
            return stream;
        }
    }
}

/// (c) A streamed request dropped after its first token stops the server's work (the `cancelled`
/// counter of `/health`), and the slot it held is free again; while it runs, a full queue
/// answers 429.
#[test]
fn dropped_stream_cancels_its_generation() {
    let server = Server::start(&["--max-concurrent", "1", "--max-queue", "0", "--max-tokens-limit", "1000000"]);
    let stream = stream_until_first_token(server.port);
    let health = server.health();
    assert_eq!((health["active"].as_u64(), health["cancelled"].as_u64()), (Some(1), Some(0)), "{health}");

    let busy = post_json(server.port, "/v1/chat/completions", &chat_body(QUESTION, 4, false));
    assert_eq!(busy.status, 429, "{}", busy.body);
    assert_openai_error(&busy.json(), Some("queue_full"), None);

    stream.shutdown(std::net::Shutdown::Both).expect("close the stream");
    drop(stream);
    let health = server.wait_health(30, |h| h["cancelled"] == 1 && h["active"] == 0);
    assert_eq!(health["cancelled"], 1, "the dropped stream's generation was not cancelled: {health}");
    assert_eq!(health["active"], 0, "{health}");
    assert_eq!(health["completed"], 0, "{health}");
    assert_eq!(health["rejected"], 1, "{health}");

    // The slot is free again.
    let reply = post_json(server.port, "/v1/chat/completions", &chat_body(QUESTION, 4, false));
    assert_eq!(reply.status, 200, "{}", reply.body);

    // A non-streaming request whose client goes away is cancelled too.
    let request =
        send(server.port, "POST", "/v1/chat/completions", Some("application/json"), &endless(false).to_string());
    server.wait_health(30, |h| h["active"] == 1);
    request.shutdown(std::net::Shutdown::Both).expect("close the request");
    drop(request);
    let health = server.wait_health(30, |h| h["cancelled"] == 2 && h["active"] == 0);
    assert_eq!((health["cancelled"].as_u64(), health["active"].as_u64()), (Some(2), Some(0)), "{health}");
}

/// The server stops on Ctrl-C with status 0, ending a running stream.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_the_server() {
    let mut server = Server::start(&["--max-tokens-limit", "1000000"]);
    let mut stream = stream_until_first_token(server.port);
    let pid = server.child.id().to_string();
    // The shell's `kill`: the test has no signal API of its own.
    match Command::new("sh").args(["-c", &format!("kill -INT {pid}")]).status() {
        Ok(sent) => assert!(sent.success(), "kill -INT {pid} failed"),
        Err(e) => return skip_or_fail("ctrl_c_stops_the_server", &format!("cannot run sh to send SIGINT: {e}")),
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait for the server") {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not stop within 30 s of Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "the server exited with {status} on Ctrl-C; stderr:\n{}", server.stderr());
    // The stream ends with the shutdown's error event: its generation was cancelled.
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    let (events, _) = sse_events(&rest);
    let last = events.last().unwrap_or_else(|| panic!("no event after Ctrl-C: {rest}"));
    assert_eq!(last["error"]["code"], "shutting_down", "{last}");
}

fn assert_openai_error(body: &Value, code: Option<&str>, param: Option<&str>) {
    let error = &body["error"];
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "no error message: {body}");
    assert!(error["type"].as_str().is_some_and(|t| !t.is_empty()), "no error type: {body}");
    let fields = error.as_object().expect("an error object");
    assert!(fields.contains_key("param") && fields.contains_key("code"), "param and code must be present: {body}");
    if let Some(code) = code {
        assert_eq!(error["code"], code, "{body}");
    }
    if let Some(param) = param {
        assert_eq!(error["param"], param, "{body}");
    }
}

/// A malformed request and the answer it must get.
struct Bad {
    what: &'static str,
    method: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: String,
    status: u16,
    code: Option<&'static str>,
    param: Option<&'static str>,
}

fn bad_requests() -> Vec<Bad> {
    let json = Some("application/json");
    let chat = "/v1/chat/completions";
    let with = |patch: Value| {
        let mut body = chat_body(QUESTION, 8, false);
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body.to_string()
    };
    let long = "word ".repeat(400);
    let bad = |what, path, body: String, status, code, param| Bad {
        what,
        method: "POST",
        path,
        content_type: json,
        body,
        status,
        code,
        param,
    };
    vec![
        bad("malformed JSON", chat, r#"{"model": "tiny-llama", "messages": ["#.into(), 400, Some("invalid_json"), None),
        Bad { content_type: Some("text/plain"), ..bad("wrong content type", chat, with(json!({})), 415, None, None) },
        Bad { content_type: None, ..bad("no content type", chat, with(json!({})), 415, None, None) },
        bad("unknown model", chat, with(json!({"model": "gpt-9"})), 404, Some("model_not_found"), Some("model")),
        bad("missing model", chat, with(json!({"model": null})), 400, None, Some("model")),
        bad("missing messages", chat, with(json!({"messages": null})), 400, None, Some("messages")),
        bad("empty messages", chat, with(json!({"messages": []})), 400, None, Some("messages")),
        bad("messages of the wrong type", chat, with(json!({"messages": "hello"})), 400, None, None),
        bad("max_tokens 0", chat, with(json!({"max_tokens": 0})), 400, None, Some("max_tokens")),
        bad(
            "max_tokens absurd",
            chat,
            with(json!({"max_tokens": 1_000_000_000_000u64})),
            400,
            None,
            Some("max_tokens"),
        ),
        bad(
            "negative max_completion_tokens",
            chat,
            with(json!({"max_completion_tokens": -3})),
            400,
            None,
            Some("max_completion_tokens"),
        ),
        bad("temperature out of range", chat, with(json!({"temperature": 7})), 400, None, Some("temperature")),
        bad("n = 2", chat, with(json!({"n": 2})), 400, None, Some("n")),
        bad(
            "prompt over --max-prompt-tokens",
            chat,
            with(json!({"messages": [{"role": "user", "content": long}]})),
            400,
            Some("context_length_exceeded"),
            Some("messages"),
        ),
        bad(
            "completions without a prompt",
            "/v1/completions",
            json!({"model": MODEL}).to_string(),
            400,
            None,
            Some("prompt"),
        ),
        bad(
            "completions with two prompts",
            "/v1/completions",
            json!({"model": MODEL, "prompt": ["a", "b"]}).to_string(),
            400,
            None,
            Some("prompt"),
        ),
        Bad { method: "GET", body: String::new(), ..bad("GET on a POST route", chat, String::new(), 405, None, None) },
        Bad { method: "DELETE", ..bad("DELETE on /v1/models", "/v1/models", String::new(), 405, None, None) },
        bad("unknown path", "/v1/nothing", "{}".into(), 404, Some("not_found"), None),
        Bad {
            method: "GET",
            ..bad("unknown model id", "/v1/models/gpt-9", String::new(), 404, Some("model_not_found"), None)
        },
    ]
}

fn check_bad(how: &str, bad: &Bad, status: u16, body: &str) {
    assert_eq!(status, bad.status, "{how}, {}: status; body {body}", bad.what);
    let body: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{how}, {}: the body is not JSON ({e}): {body:?}", bad.what));
    assert_openai_error(&body, bad.code, bad.param);
}

/// (d) Malformed requests get a 4xx with an OpenAI-style error body, over raw HTTP and with curl,
/// and the server keeps serving.
#[test]
fn malformed_requests_get_openai_errors() {
    const TEST: &str = "malformed_requests_get_openai_errors";
    let server = Server::start(&["--max-prompt-tokens", "128"]);
    for bad in bad_requests() {
        let reply = http(server.port, bad.method, bad.path, bad.content_type, &bad.body);
        check_bad("raw HTTP", &bad, reply.status, &reply.body);
    }
    assert_eq!(server.health()["status"], "ok");

    let curl = Command::new("curl").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    if !curl {
        skip_or_fail(TEST, "curl is missing; the raw HTTP checks passed");
        return;
    }
    for bad in bad_requests() {
        let mut command = Command::new("curl");
        command.args(["-sS", "-X", bad.method, "-w", "\n%{http_code}"]);
        // curl sends form data's type by default; `Content-Type:` with no value removes it.
        command.args(["-H", &format!("Content-Type:{}", bad.content_type.map_or(String::new(), |t| format!(" {t}")))]);
        if !bad.body.is_empty() {
            command.args(["--data-binary", &bad.body]);
        }
        let out = command.arg(format!("{}{}", server.url(), bad.path)).output().expect("run curl");
        assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (body, status) = stdout.rsplit_once('\n').expect("curl's status line");
        check_bad("curl", &bad, status.trim().parse().expect("an HTTP status"), body);
    }
    // A streamed answer through curl ends with [DONE].
    let out = Command::new("curl")
        .args(["-sS", "-N", "-H", "Content-Type: application/json", "--data-binary"])
        .arg(chat_body(QUESTION, 8, true).to_string())
        .arg(format!("{}/v1/chat/completions", server.url()))
        .output()
        .expect("run curl");
    let (events, done) = sse_events(&String::from_utf8_lossy(&out.stdout));
    assert!(done && !events.is_empty(), "curl's stream: {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(server.health()["status"], "ok");
}

//! The `focusllm` binary on the tiny fixture model: answers equal the library's own under the same
//! reading policy, long documents read with FocusLLM, the measuring commands run, and bad input
//! ends in one error line, never a panic.

use std::path::PathBuf;

use assert_cmd::Command;
use focusllm::{ChatMessage, Device, Sampling};
use focusllm_cli::prompt::document_question;
use focusllm_cli::{FocusArgs, ModelArgs, Reader};

const DOCUMENT: &str = "The capital of France is Paris. The river of Paris is the Seine.";
const QUESTION: &str = "What is the capital of France?";
const LONG_SENTENCE: &str = "A long book has many chapters, and every chapter has many pages full of words. ";

fn fixture() -> PathBuf {
    focusllm_testdata::fixture_dir("tiny-llama")
}

fn focusllm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_focusllm"))
}

/// A file under the temporary directory holding `text`, named for the test that writes it.
fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("focusllm-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// The fixture on one CPU thread without an adapter, as the command lines below ask for it.
fn model_args() -> ModelArgs {
    ModelArgs { model: Some(fixture()), device: Device::Cpu { threads: None }, threads: vec![1], ..Default::default() }
}

/// The flags of [`model_args`] on a command line.
fn model_flags() -> Vec<String> {
    ["--model", &fixture().to_string_lossy(), "--threads", "1", "--no-adapter"].map(String::from).to_vec()
}

/// The library's greedy answer to `messages` under the reading policy of `focus`.
fn library_answer(focus: &FocusArgs, messages: &[ChatMessage], max_tokens: usize) -> String {
    let model = ModelArgs { no_adapter: true, ..model_args() };
    let reader = Reader::load(&model, focus).unwrap();
    let ids = reader.chat_ids(messages).unwrap();
    let options = reader.options(ids.len(), max_tokens, Sampling::greedy(), None, None);
    reader.llm().generate_ids(&ids, &options).unwrap().map(|t| t.unwrap().text).collect()
}

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn ask_prints_the_librarys_greedy_answer() {
    let doc = temp_file("short.txt", DOCUMENT);
    let output = focusllm()
        .args(["ask", "--file", &doc.to_string_lossy(), "--max-tokens", "8"])
        .args(model_flags())
        .arg(QUESTION)
        .output()
        .unwrap();
    assert!(output.status.success(), "stderr: {}", stderr_of(&output));
    let user = document_question(DOCUMENT, QUESTION);
    let expected = library_answer(&FocusArgs::default(), &[ChatMessage::new("user", user)], 8);
    assert!(!expected.is_empty());
    assert_eq!(stdout_of(&output), format!("{expected}\n"));
    assert!(stderr_of(&output).contains("plain attention"), "stderr: {}", stderr_of(&output));
}

#[test]
fn ask_reads_a_long_document_with_focusllm() {
    let document = LONG_SENTENCE.repeat(12);
    let doc = temp_file("long.txt", &document);
    let sizes = ["--threshold", "64", "--local-window", "64", "--chunk-size", "32", "--query-len", "16"];
    for decode in ["retrieve", "cached-local"] {
        let output = focusllm()
            .args(["ask", "--file", &doc.to_string_lossy(), "--max-tokens", "4", "--decode", decode])
            .args(["--read-budget", "160"])
            .args(sizes)
            .args(model_flags())
            .arg(QUESTION)
            .output()
            .unwrap();
        let stderr = stderr_of(&output);
        assert!(output.status.success(), "{decode}: stderr: {stderr}");
        assert!(stderr.contains("reading with FocusLLM"), "{decode}: stderr: {stderr}");
        let focus = FocusArgs {
            threshold: Some(64),
            local_window: Some(64),
            chunk_size: Some(32),
            query_len: Some(16),
            read_budget: Some(160),
            decode: Some(focusllm_cli::focus_args::parse_decode(decode).unwrap()),
            ..Default::default()
        };
        let expected = library_answer(&focus, &[ChatMessage::new("user", document_question(&document, QUESTION))], 4);
        assert_eq!(stdout_of(&output), format!("{expected}\n"), "{decode}");
    }
}

/// The library's greedy answer to `question` over `document` read as a document memory under
/// the reading policy of `focus`.
fn library_document_answer(focus: &FocusArgs, document: &str, question: &str, max_tokens: usize) -> String {
    let model = ModelArgs { no_adapter: true, ..model_args() };
    let reader = Reader::load(&model, focus).unwrap();
    let config = focusllm_cli::commands::ask::memory_config(&reader).unwrap();
    let read = reader.llm().read_text(document, &config, Default::default()).unwrap();
    assert!(!read.chunks().is_empty(), "the document is read with FocusLLM");
    let options = focusllm::GenerateOptions { max_tokens, sampling: Sampling::greedy(), ..Default::default() };
    read.ask(question, &options).unwrap().map(|t| t.unwrap().text).collect()
}

#[test]
fn ask_saves_a_document_memory_and_answers_over_it_later() {
    let document = LONG_SENTENCE.repeat(12);
    let doc = temp_file("memory-doc.txt", &document);
    let memory = std::env::temp_dir().join(format!("focusllm-cli-{}-memory.safetensors", std::process::id()));
    let memory = memory.to_string_lossy().into_owned();
    let sizes = ["--threshold", "64", "--local-window", "64", "--chunk-size", "32", "--query-len", "16"];
    let focus = FocusArgs {
        threshold: Some(64),
        local_window: Some(64),
        chunk_size: Some(32),
        query_len: Some(16),
        decode: Some(focusllm::DecodeMode::CachedLocal),
        ..Default::default()
    };
    let first = "How many chapters has the book?";
    let saved = focusllm()
        .args(["ask", "--file", &doc.to_string_lossy(), "--save-memory", &memory, "--max-tokens", "4"])
        .args(["--decode", "cached-local"])
        .args(sizes)
        .args(model_flags())
        .arg(first)
        .output()
        .unwrap();
    let stderr = stderr_of(&saved);
    assert!(saved.status.success(), "stderr: {stderr}");
    assert!(stderr.contains("read with FocusLLM") && stderr.contains("saved to"), "stderr: {stderr}");
    assert_eq!(stdout_of(&saved), format!("{}\n", library_document_answer(&focus, &document, first, 4)));

    // Another question over the saved memory: no --file, no sizes (the file carries them).
    let loaded = focusllm()
        .args(["ask", "--memory", &memory, "--max-tokens", "4"])
        .args(model_flags())
        .arg(QUESTION)
        .output()
        .unwrap();
    assert!(loaded.status.success(), "stderr: {}", stderr_of(&loaded));
    let expected = library_document_answer(&focus, &document, QUESTION, 4);
    assert!(!expected.is_empty());
    assert_eq!(stdout_of(&loaded), format!("{expected}\n"));

    // The decoding flags apply over a loaded memory: refreshing one chunk per token answers as the
    // library does when it reads the same document with that setting.
    let one = focusllm()
        .args(["ask", "--memory", &memory, "--max-tokens", "4", "--refresh-chunks", "1"])
        .args(model_flags())
        .arg(QUESTION)
        .output()
        .unwrap();
    assert!(one.status.success(), "stderr: {}", stderr_of(&one));
    let focus_one = FocusArgs { refresh_chunks: Some(focusllm_cli::focus_args::Refresh(Some(1))), ..focus.clone() };
    assert_eq!(stdout_of(&one), format!("{}\n", library_document_answer(&focus_one, &document, QUESTION, 4)));

    // A memory saved by another model is refused in one line naming what differs.
    let qwen =
        focusllm::Llm::load(focusllm_testdata::fixture_dir("tiny-qwen2"), Device::Cpu { threads: Some(1) }).unwrap();
    let config = focusllm::FocusConfig {
        threshold: Some(64),
        local_window: 64,
        chunk_size: 32,
        query_len: Some(16),
        ..Default::default()
    };
    let other = std::env::temp_dir().join(format!("focusllm-cli-{}-qwen2-memory.safetensors", std::process::id()));
    qwen.read_text(&document, &config, Default::default()).unwrap().save(&other).unwrap();
    let model = fixture();
    fails_naming(
        &["ask", "--memory", &other.to_string_lossy(), "--model", &model.to_string_lossy(), "--no-adapter", "q"],
        "model.",
    );
    fails_naming(&["ask", "--memory", &memory, "--file", &doc.to_string_lossy(), "q"], "--memory");
}

#[test]
fn chat_answers_each_line_of_input() {
    let output = focusllm()
        .args(["chat", "--max-tokens", "4"])
        .args(model_flags())
        .write_stdin("Hello there\n")
        .output()
        .unwrap();
    assert!(output.status.success(), "stderr: {}", stderr_of(&output));
    let expected = library_answer(&FocusArgs::default(), &[ChatMessage::new("user", "Hello there")], 4);
    assert_eq!(stdout_of(&output), format!("{expected}\n"));
}

#[test]
fn passkey_bench_and_eval_run_on_the_fixture() {
    let sizes = ["--local-window", "64", "--chunk-size", "32", "--query-len", "16"];
    let passkey = focusllm()
        .args(["passkey", "--lengths", "200", "--depths", "0.5", "--modes", "plain,focus-cached,focus-frozen"])
        .args(sizes)
        .args(model_flags())
        .output()
        .unwrap();
    assert!(passkey.status.success(), "stderr: {}", stderr_of(&passkey));
    let table = stdout_of(&passkey);
    assert!(table.contains("| mode | tokens | depth 0.5 |") && table.contains("| focus-cached-local |"), "{table}");

    let bench = focusllm()
        .args(["bench", "--prefill", "64", "--decode-tokens", "2", "--runs", "1", "--focus-lengths", "200"])
        .args(["--focus-modes", "frozen"])
        .args(sizes)
        .args(model_flags())
        .output()
        .unwrap();
    assert!(bench.status.success(), "stderr: {}", stderr_of(&bench));
    let table = stdout_of(&bench);
    assert!(table.contains("| cpu x1 | prefill | 64 |") && table.contains("focus-frozen prefill"), "{table}");

    let sample = serde_json::json!({
        "task": "single-number", "split": "dev", "length": 400, "seed": 0, "question": "What is the number?",
        "prefix": "The number is", "answers": ["7"], "needles": [[0.5, "The number is 7."]],
        "paragraphs": vec![LONG_SENTENCE; 8],
    });
    let suite = temp_file("suite.jsonl", &format!("{sample}\n"));
    let eval = focusllm()
        .args(["eval", "--suite", &suite.to_string_lossy(), "--lengths", "400", "--modes", "plain,focus-retrieve"])
        .args(["--max-tokens", "2", "--read-budget", "128", "--retrieve-query", "8"])
        .args(sizes)
        .args(model_flags())
        .output()
        .unwrap();
    assert!(eval.status.success(), "stderr: {}", stderr_of(&eval));
    let table = stdout_of(&eval);
    assert!(table.contains("### split: dev") && table.contains("focus-retrieve@128"), "{table}");
}

/// Runs `args` and checks it fails with one `focusllm: error:` line containing `needle`.
fn fails_naming(args: &[&str], needle: &str) {
    let output = focusllm().args(args).output().unwrap();
    let stderr = stderr_of(&output);
    assert!(!output.status.success(), "{args:?} succeeded");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line: {stderr}");
    assert!(lines[0].starts_with("focusllm: error: ") && lines[0].contains(needle), "{args:?}: {stderr}");
}

#[test]
fn bad_input_ends_in_one_error_line() {
    let doc = temp_file("errors.txt", DOCUMENT);
    let doc = doc.to_string_lossy();
    let model = fixture();
    let model = model.to_string_lossy();
    fails_naming(&["ask", "--model", &model, "question"], "--file");
    fails_naming(&["ask", "--model", &model, "--file", &doc], "QUESTION");
    fails_naming(&["ask", "--model", &model, "--file", "/nonexistent/book.txt", "q"], "/nonexistent/book.txt");
    fails_naming(&["ask", "--model", "/nonexistent/model", "--file", &doc, "q"], "/nonexistent/model");
    fails_naming(&["ask", "--model", &model, "--device", "tpu", "--file", &doc, "q"], "--device");
    fails_naming(&["ask", "--model", &model, "--decode", "fast", "--file", &doc, "q"], "--decode");
    fails_naming(&["ask", "--model", &model, "--local-window", "0", "--file", &doc, "q"], "local_window");
    fails_naming(
        &["ask", "--model", &model, "--adapter", "/nonexistent/a.safetensors", "--file", &doc, "q"],
        "a.safetensors",
    );
    fails_naming(&["passkey", "--model", &model, "--modes", "adapter-cached"], "--adapter");
    fails_naming(&["passkey", "--model", &model, "--decode", "exact"], "--decode");
    fails_naming(&["passkey", "--lengths", "lots"], "lots");
    fails_naming(&["frobnicate"], "frobnicate");
}

#[test]
fn the_plain_switch_refuses_a_prompt_past_the_window() {
    let doc = temp_file("past-window.txt", &LONG_SENTENCE.repeat(20));
    let model = fixture();
    let args = ["ask", "--plain", "--model", &model.to_string_lossy(), "--file", &doc.to_string_lossy(), "q"];
    fails_naming(&args, "drop --plain");
}

#[test]
fn help_of_the_measuring_commands() {
    for (command, flag) in [("passkey", "--lengths"), ("bench", "--focus-lengths"), ("eval", "--suite")] {
        let output = focusllm().args([command, "--help"]).output().unwrap();
        assert!(output.status.success());
        let help = stdout_of(&output);
        assert!(help.contains(flag) && help.contains("--chunk-size") && help.contains("--model"), "{help}");
    }
}

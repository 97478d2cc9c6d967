//! Token counts must equal OpenAI's own tokenizer, not approximate it: compare with tiktoken-rs
//! (an independent port of tiktoken) on real prompts and on awkward text.

use routerx_core::features::count_tokens;

fn corpus() -> Vec<String> {
    let mut texts: Vec<String> = vec![
        "".into(),
        " ".into(),
        "hello world".into(),
        "Привет, мир! Как дела?".into(),
        "日本語のテキストも正しく数える必要があります。".into(),
        "emoji 👩‍💻🚀 and   multiple   spaces\n\n\ttabs".into(),
        "def f(x):\n    return {'a': [1, 2, 3]}  # comment\n".into(),
        "1234567890 3.14159 -42 1e-9 0xFF".into(),
        "I'm sure they'll've done it, won't they?".into(),
        "   leading and trailing   ".into(),
    ];
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/minilm-reference/sentences.json");
    match std::fs::read_to_string(&data) {
        Ok(s) => texts.extend(serde_json::from_str::<Vec<String>>(&s).expect("sentences.json is a list of strings")),
        Err(_) => eprintln!("skipping real sentences: {} not found", data.display()),
    }
    texts
}

#[test]
fn counts_equal_tiktoken_o200k() {
    let reference = tiktoken_rs::o200k_base().unwrap();
    for t in corpus() {
        assert_eq!(count_tokens(&t), reference.encode_ordinary(&t).len(), "{t:?}");
    }
}

//! Request features: exact token counts and the cheap signals the classifier reads.
//!
//! Everything here is one linear pass over the text (plus the BPE), so features for a
//! 200-token prompt cost a few microseconds.

use std::sync::LazyLock;

use crate::request::{Request, Role};

/// The token counter: OpenAI's o200k_base vocabulary, compiled into the binary.
pub fn tokenizer() -> &'static bpe_openai::Tokenizer {
    bpe_openai::o200k_base()
}

/// Forces the vocabulary to load now rather than on the first request.
pub fn warm_up() {
    static WARM: LazyLock<usize> = LazyLock::new(|| tokenizer().count("warm up"));
    let _ = *WARM;
}

/// Exact o200k token count of `text`.
pub fn count_tokens(text: &str) -> usize {
    crate::tokens::count(text)
}

/// Per-message overhead of the chat format (role and separators), as OpenAI documents it.
const TOKENS_PER_MESSAGE: u32 = 3;
/// Every reply is primed with `<|start|>assistant<|message|>`.
const TOKENS_REPLY_PRIMER: u32 = 3;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LengthHint {
    #[default]
    None,
    Short,
    Long,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Features {
    /// Tokens the model will read: every message, chat framing, tool definitions.
    pub input_tokens: u32,
    /// Tokens of the last user turn alone.
    pub last_tokens: u32,
    /// User turns in the conversation.
    pub turns: u32,
    pub has_system: bool,
    /// Fenced code blocks (```) in the last user turn.
    pub code_blocks: u32,
    /// Share of characters that are code punctuation (`{}();=[]<>`) in the last user turn.
    pub code_density: f32,
    /// Share of characters that are mathematical operators or LaTeX commands.
    pub math_density: f32,
    /// Numbers (runs of digits) in the last user turn.
    pub numbers: u32,
    /// Question marks in the last user turn.
    pub questions: u32,
    pub tools: u32,
    /// An explicit word count asked for ("in 500 words"), if any.
    pub requested_words: Option<u32>,
    /// The last user turn is written in a non-Latin script (a cheap proxy for non-English;
    /// full language detection costs ~100 µs and runs only when a caller asks for it).
    pub non_latin: bool,
}

impl Features {
    pub fn extract(req: &Request) -> Features {
        let mut f = Features::default();
        let mut input = TOKENS_REPLY_PRIMER;
        let last = req.last_user_index();
        for (i, m) in req.messages.iter().enumerate() {
            let n = crate::tokens::count(m.content.as_str()) as u32;
            input += TOKENS_PER_MESSAGE + n;
            if Some(i) == last {
                f.last_tokens = n;
            }
            match m.role {
                Role::User => f.turns += 1,
                Role::System => f.has_system = true,
                _ => {}
            }
        }
        if !req.tools.is_empty() {
            input += crate::tokens::count(req.tools.as_str()) as u32;
        }
        f.input_tokens = input;
        f.tools = req.tool_count;
        let last = req.last_user();
        scan_text(last, &mut f);
        f.non_latin = !matches!(whatlang::detect_script(last), None | Some(whatlang::Script::Latin));
        f
    }
}

fn scan_text(text: &str, f: &mut Features) {
    let mut chars = 0u32;
    let mut code = 0u32;
    let mut math = 0u32;
    let mut in_number = false;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b & 0xC0 != 0x80 {
            chars += 1;
        }
        match b {
            b'{' | b'}' | b'(' | b')' | b';' | b'[' | b']' | b'<' | b'>' => code += 1,
            b'=' => {
                code += 1;
                math += 1
            }
            b'+' | b'*' | b'/' | b'^' => math += 1,
            b'\\' => math += 1,
            b'?' => f.questions += 1,
            b'`' if bytes[i..].starts_with(b"```") && (i == 0 || bytes[i - 1] != b'`') => f.code_blocks += 1,
            _ => {}
        }
        let digit = b.is_ascii_digit();
        if digit && !in_number {
            f.numbers += 1;
        }
        in_number = digit;
    }
    // A fence opens and closes a block.
    f.code_blocks = f.code_blocks.div_ceil(2);
    for c in ['√', '∑', '∫', '∂', 'π', '≤', '≥', '≠', '∞', '×', '÷'] {
        math += text.matches(c).count() as u32;
    }
    let n = chars.max(1) as f32;
    f.code_density = code as f32 / n;
    f.math_density = math as f32 / n;
    f.requested_words = requested_words(text);
}

/// Finds "500 words" / "500-word" and returns the number, which predicts output length better
/// than any category prior.
fn requested_words(text: &str) -> Option<u32> {
    let lower = text.as_bytes();
    let mut best = None;
    let mut i = 0;
    while let Some(pos) = find_ci(&lower[i..], b"word") {
        let at = i + pos;
        let mut j = at;
        while j > 0 && (lower[j - 1] == b' ' || lower[j - 1] == b'-') {
            j -= 1;
        }
        let end = j;
        while j > 0 && (lower[j - 1].is_ascii_digit() || lower[j - 1] == b',') {
            j -= 1;
        }
        if end > j && end - j <= 7 {
            let digits: String = text[j..end].chars().filter(|c| c.is_ascii_digit()).collect();
            if let Ok(n) = digits.parse::<u32>() {
                if (1..=20_000).contains(&n) {
                    best = Some(best.map_or(n, |b: u32| b.max(n)));
                }
            }
        }
        i = at + 4;
    }
    best
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle))
}

/// Language of the text (ISO 639-3, `und` when unsure), from its first 256 bytes.
pub fn detect_language(text: &str) -> &'static str {
    let mut end = text.len().min(256);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    match whatlang::detect(&text[..end]) {
        Some(info) if info.is_reliable() || info.confidence() > 0.5 => info.lang().code(),
        _ => "und",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Message;

    #[test]
    fn token_counts_match_o200k() {
        assert_eq!(count_tokens("hello world"), 2);
        assert_eq!(count_tokens(""), 0);
        // Tokens are bounded by bytes and never zero for non-empty text.
        let long = "The quick brown fox jumps over the lazy dog. ".repeat(50);
        let n = count_tokens(&long);
        assert!(n > 400 && n < 600, "{n}");
    }

    #[test]
    fn chat_framing_is_counted() {
        let req = Request {
            tenant: "t".into(),
            messages: vec![Message { role: Role::System, content: "You are terse.".into() }, Message::user("hello world")],
            ..Default::default()
        };
        let f = Features::extract(&req);
        let content = count_tokens("You are terse.") + count_tokens("hello world");
        assert_eq!(f.input_tokens as usize, content + 2 * 3 + 3);
        assert!(f.has_system);
        assert_eq!(f.turns, 1);
    }

    #[test]
    fn scans_code_math_and_hints() {
        let req = Request::from_prompt("t", "Fix this:\n```python\ndef f(x):\n    return x[0]\n```\nWhy?");
        let f = Features::extract(&req);
        assert_eq!(f.code_blocks, 1);
        assert!(f.code_density > 0.02);
        assert_eq!(f.questions, 1);
        let f = Features::extract(&Request::from_prompt("t", "Solve x^2 + 3x = 10 and 2y/5 = 4"));
        assert!(f.math_density > 0.1, "{}", f.math_density);
        assert_eq!(f.numbers, 6);
        let f = Features::extract(&Request::from_prompt("t", "Write a 1,500-word essay on tides."));
        assert_eq!(f.requested_words, Some(1500));
        let f = Features::extract(&Request::from_prompt("t", "Answer in 50 words or fewer."));
        assert_eq!(f.requested_words, Some(50));
    }

    #[test]
    fn detects_language() {
        assert_eq!(detect_language("Quelle est la capitale de la France et pourquoi est-elle si célèbre ?"), "fra");
        assert_eq!(detect_language("What is the capital of France and why is it so famous?"), "eng");
        assert!(Features::extract(&Request::from_prompt("t", "Как перевести эту фразу на английский язык?")).non_latin);
        assert!(!Features::extract(&Request::from_prompt("t", "How do I translate this phrase?")).non_latin);
    }
}

//! Exact o200k_base token counts, several times faster than `bpe_openai::o200k_base().count`.
//!
//! The reference path spends about half its time in the Unicode regex pre-tokenizer and half in
//! BPE per piece. [`split`] decides each piece with a byte scanner when the regex outcome
//! depends on ASCII characters only, and asks the regex for the others; [`count`] memoises BPE
//! counts of short pieces per thread, since prose repeats its words.
//!
//! Why the scanner is exact: it is a backtracking simulation of the o200k pattern (below) in
//! which every character class test is made on the actual character. On ASCII the classes are
//! plain (`\p{L}` = `[A-Za-z]`, `\p{N}` = `[0-9]`, no marks, `\s` = `[\t\n\x0B\x0C\r ]`); a test
//! whose answer for a non-ASCII character is unknown to the scanner bails out, and the piece is
//! then matched by the regex itself. The pattern has no look-behind, so a piece depends only on
//! the text from its start, and matching the rest of the text alone is what the regex does too.
//!
//! ```text
//! [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//! |[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
//! |\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use bpe_openai::byte_pair_encoding::BytePairEncoding;
use xxhash_rust::xxh3::xxh3_64;

/// Exact o200k_base token count of `text` (equal to tiktoken's `encode_ordinary(text).len()`).
pub fn count(text: &str) -> usize {
    let bpe = &bpe_openai::o200k_base().bpe;
    let cached = MEMO.try_with(|memo| {
        let Ok(mut memo) = memo.try_borrow_mut() else { return None };
        Some(split(text).map(|piece| memo.count(bpe, piece.as_bytes())).sum())
    });
    match cached {
        Ok(Some(n)) => n,
        // Thread-local already torn down (called from a TLS destructor).
        _ => split(text).map(|piece| bpe.count(piece.as_bytes())).sum(),
    }
}

/// The o200k_base pre-tokenizer pieces of `text`, identical to `o200k_base().split(text)`.
pub fn split(text: &str) -> Pieces<'_> {
    Pieces { text, pos: 0 }
}

pub struct Pieces<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let start = self.pos;
        if start >= self.text.len() {
            return None;
        }
        let end = match ascii_piece(self.text.as_bytes(), start) {
            Some(end) => end,
            None => {
                let rest = &self.text[start..];
                start + bpe_openai::o200k_base().split(rest).next().map_or(rest.len(), str::len)
            }
        };
        self.pos = end;
        Some(&self.text[start..end])
    }
}

// Byte classes; `NA` is any byte of a non-ASCII character, `END` the end of the text.
const NA: u8 = 0;
const UP: u8 = 1; // A-Z
const LO: u8 = 2; // a-z
const DIG: u8 = 3; // 0-9
const NL: u8 = 4; // \r \n
const WS: u8 = 5; // space \t \x0B \x0C
const OTH: u8 = 6; // any other ASCII: punctuation, symbols, control characters
const END: u8 = 7;

static CLASS: [u8; 256] = {
    let mut t = [NA; 256];
    let mut b = 0;
    while b < 128 {
        t[b] = match b as u8 {
            b'A'..=b'Z' => UP,
            b'a'..=b'z' => LO,
            b'0'..=b'9' => DIG,
            b'\r' | b'\n' => NL,
            b' ' | b'\t' | 0x0B | 0x0C => WS,
            _ => OTH,
        };
        b += 1;
    }
    t
};

#[inline(always)]
fn class(b: &[u8], i: usize) -> u8 {
    match b.get(i) {
        Some(&c) => CLASS[c as usize],
        None => END,
    }
}

/// End of the piece starting at `p` (< `b.len()`), or `None` when the outcome depends on a
/// non-ASCII character.
#[inline]
fn ascii_piece(b: &[u8], p: usize) -> Option<usize> {
    let c0 = class(b, p);
    match c0 {
        NA => None,
        UP | LO => word(b, p),
        DIG => {
            // \p{N}{1,3}
            let mut i = p + 1;
            while i < p + 3 {
                match class(b, i) {
                    DIG => i += 1,
                    NA => return None,
                    _ => break,
                }
            }
            Some(i)
        }
        NL => whitespace(b, p),
        _ => {
            // WS or OTH: both are in [^\r\n\p{L}\p{N}], the optional prefix of the two word
            // alternatives, which are tried first.
            match class(b, p + 1) {
                NA => None,
                UP | LO => word(b, p + 1),
                c1 => {
                    if c0 == OTH {
                        punct(b, p)
                    } else if b[p] == b' ' && c1 == OTH {
                        punct(b, p + 1)
                    } else {
                        whitespace(b, p)
                    }
                }
            }
        }
    }
}

/// The two word alternatives from `s`, where `s` holds a letter. On ASCII the upper and lower
/// sets are disjoint, so `U*L+` and `U+L*` both take the maximal upper run then the maximal
/// lower run: one of them matches, with the same extent, and backtracking cannot help.
#[inline]
fn word(b: &[u8], s: usize) -> Option<usize> {
    let mut i = s;
    loop {
        match class(b, i) {
            UP => i += 1,
            NA => return None,
            _ => break,
        }
    }
    loop {
        match class(b, i) {
            LO => i += 1,
            NA => return None,
            _ => break,
        }
    }
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)? — greedy, and the first letters are distinct.
    if b.get(i) != Some(&b'\'') {
        return Some(i);
    }
    // Case folding reaches beyond ASCII ('s' matches 'ſ'), so bail on non-ASCII.
    let lower = |j: usize| b.get(j).map(|&c| if c >= 0x80 { None } else { Some(c | 0x20) });
    let second = |j: usize, want: u8| match lower(j) {
        Some(None) => None,
        Some(Some(c)) if c == want => Some(j + 1),
        _ => Some(i),
    };
    match lower(i + 1) {
        Some(None) => None,
        Some(Some(b's' | b't' | b'm' | b'd')) => Some(i + 2),
        Some(Some(b'r' | b'v')) => second(i + 2, b'e'),
        Some(Some(b'l')) => second(i + 2, b'l'),
        _ => Some(i),
    }
}

/// ` ?[^\s\p{L}\p{N}]+[\r\n/]*` from `s`, where `s` holds an ASCII non-space, non-alphanumeric
/// (the optional space, if any, is before `s`).
#[inline]
fn punct(b: &[u8], s: usize) -> Option<usize> {
    let mut i = s + 1;
    loop {
        match class(b, i) {
            OTH => i += 1,
            NA => return None,
            _ => break,
        }
    }
    // [\r\n/] is an ASCII set, so a non-ASCII character is simply not in it.
    while matches!(b.get(i), Some(b'\r' | b'\n' | b'/')) {
        i += 1;
    }
    Some(i)
}

/// `\s*[\r\n]+|\s+(?!\S)|\s+` from `p`, which holds ASCII whitespace.
#[inline]
fn whitespace(b: &[u8], p: usize) -> Option<usize> {
    let mut i = p;
    let mut last_nl = None;
    loop {
        match class(b, i) {
            WS => i += 1,
            NL => {
                last_nl = Some(i);
                i += 1
            }
            // Could be whitespace (NBSP, U+2028…), which would extend the run.
            NA => return None,
            _ => break,
        }
    }
    Some(match last_nl {
        // \s* backtracks to the last newline of the run; [\r\n]+ then takes just it.
        Some(nl) => nl + 1,
        None if i == b.len() => i,
        // The run minus its last space, which then prefixes the next piece.
        None if i - p >= 2 => i - 1,
        None => i,
    })
}

/// Per-thread memo of BPE counts for pieces of at most `MEMO_KEY` bytes (longer pieces are rare
/// and not worth keeping). Keys are the piece bytes themselves, so lookups are exact.
const MEMO_KEY: usize = 24;
/// Bounds the memo at a few MB per thread; clearing is cheap and a working set refills fast.
const MEMO_CAP: usize = 1 << 16;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    len: u8,
    bytes: [u8; MEMO_KEY],
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(xxh3_64(&self.bytes[..self.len as usize]));
    }
}

/// The key already carries a well-mixed 64-bit hash.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxh3_64(bytes);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

#[derive(Default)]
struct Memo(HashMap<Key, u32, BuildHasherDefault<PassThrough>>);

impl Memo {
    #[inline]
    fn count(&mut self, bpe: &BytePairEncoding, piece: &[u8]) -> usize {
        // Every single byte is a token of a byte-level BPE.
        if piece.len() <= 1 {
            return piece.len();
        }
        if piece.len() > MEMO_KEY {
            return bpe.count(piece);
        }
        let mut key = Key { len: piece.len() as u8, bytes: [0; MEMO_KEY] };
        key.bytes[..piece.len()].copy_from_slice(piece);
        if let Some(&n) = self.0.get(&key) {
            return n as usize;
        }
        let n = bpe.count(piece);
        if self.0.len() >= MEMO_CAP {
            self.0.clear();
        }
        self.0.insert(key, n as u32);
        n
    }
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::LazyLock;

    static TIKTOKEN: LazyLock<tiktoken_rs::CoreBPE> = LazyLock::new(|| tiktoken_rs::o200k_base().unwrap());

    /// Checks `split` against bpe-openai's regex piece by piece, and `count` against tiktoken.
    #[track_caller]
    fn check(text: &str) {
        let ours: Vec<&str> = split(text).collect();
        let reference: Vec<&str> = bpe_openai::o200k_base().split(text).collect();
        assert_eq!(ours, reference, "split of {text:?}");
        let expected = TIKTOKEN.encode_ordinary(text).len();
        assert_eq!(count(text), expected, "count of {text:?}");
        // Again, now from the memo.
        assert_eq!(count(text), expected, "memoised count of {text:?}");
    }

    const NASTY: &[&str] = &[
        "",
        " ",
        "   ",
        "\n",
        "\r\n",
        "\t",
        " \t \n \r\n\x0B\x0C ",
        "I'M",
        "I'm",
        "don't",
        "DON'T",
        "we'RE they'Ve i'LL he'D",
        "'s",
        "'S's",
        "'t'",
        "x'",
        "x'r",
        "x're",
        "x'l",
        "x'll",
        "x'lL'",
        "it's'",
        "HELLOworld",
        "HELLO world",
        "HelloWorld",
        "ABC def",
        " ABC def",
        "ABC'S",
        "12345",
        " 123",
        "1234567",
        "a1b2c3",
        "a  b",
        "a \n\n  b",
        "a \n \n  b",
        "\t\tx",
        "\tx",
        " x",
        "  x",
        "trailing   ",
        "trailing \n",
        "x\r\n\r\ny",
        "x\r\n \r\n y",
        "//comment",
        " //comment",
        "path/to/file\n",
        "a/\n//b",
        "end.\n/\n\nnext",
        "  !!hello",
        " !!hello",
        "!!hello",
        "?!...,;:--(){}[]<>\"'`~@#$%^&*_+=|\\",
        "x = f(a, b);\n\treturn x;\n}",
        "\"quoted\" 'single' (paren)",
        "e.g. i.e. U.S.A.",
        "\x00\x01\x7f abc\x1b[0m",
        "$100.50 and 3.14159 or 1,000,000",
        "   \n",
        "\n\n\n",
        " \n ",
        "\x0Bword\x0C",
    ];

    #[test]
    fn nasty_ascii_cases() {
        for t in NASTY {
            check(t);
        }
    }

    /// Non-ASCII characters next to every decision the scanner makes.
    const NON_ASCII: &[&str] = &[
        "é", "É", "ſ", "\u{00A0}", "\u{2028}", "\u{3000}", "\u{0085}", "—", "’", "“", "٣", "½", "Ⅻ", "ǅ", "ʰ", "ª", "中文", "\u{0301}",
        "\u{212A}", "ß", "😀", "\u{200B}", "ﬀ", "𝐀",
    ];

    #[test]
    fn non_ascii_boundaries() {
        let ascii = ["", "a", "A", "1", "12", " ", "  ", "\n", " \n", "'", "'s", "x'", "x'r", "x'l", "!", " !", "/", "\t", "ab", "AB"];
        let mut n = 0;
        for l in ascii {
            for m in NON_ASCII {
                for r in ascii {
                    check(&format!("{l}{m}{r}"));
                    check(&format!("{m}{l}{m}{r}{m}"));
                    n += 2;
                }
            }
        }
        assert!(n > 10_000);
    }

    /// Strings over a small alphabet weighted toward the classes where the pattern's
    /// alternatives compete.
    fn random_text(rng: &mut fastrand::Rng, alphabet: &[&str]) -> String {
        let len = rng.usize(0..=60);
        let mut s = String::with_capacity(len);
        for _ in 0..len {
            s.push_str(alphabet[rng.usize(..alphabet.len())]);
        }
        s
    }

    const ASCII_ALPHABET: &[&str] = &[
        "a", "e", "s", "t", "r", "v", "l", "m", "d", "x", "S", "T", "R", "E", "L", "M", "D", "A", "0", "1", "9", " ", " ", " ", " ", "\t",
        "\n", "\n", "\r", "'", "'", "/", "/", ".", ",", "!", "-", "(", "\"", "\x0B", "\x00",
    ];

    /// ASCII text never reaches the regex.
    #[track_caller]
    fn assert_scanned(text: &str) {
        let mut p = 0;
        while p < text.len() {
            p = ascii_piece(text.as_bytes(), p).unwrap_or_else(|| panic!("regex fallback at {p} in {text:?}"));
        }
    }

    #[test]
    fn random_ascii_matches_reference() {
        let mut rng = fastrand::Rng::with_seed(0x5eed_0200);
        for _ in 0..25_000 {
            let text = random_text(&mut rng, ASCII_ALPHABET);
            check(&text);
            assert_scanned(&text);
        }
        for t in NASTY {
            assert_scanned(t);
        }
    }

    #[test]
    fn random_mixed_matches_reference() {
        let alphabet: Vec<&str> = ASCII_ALPHABET.iter().chain(NON_ASCII).copied().collect();
        let mut rng = fastrand::Rng::with_seed(0x5eed_0201);
        for _ in 0..25_000 {
            check(&random_text(&mut rng, &alphabet));
        }
    }

    fn data_file(rel: &str) -> Option<String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
        match std::fs::read_to_string(&path) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("skipping {}: {e}", path.display());
                None
            }
        }
    }

    #[test]
    fn reference_sentences() {
        let Some(json) = data_file("../../../shared/data/minilm-reference/sentences.json") else { return };
        let sentences: Vec<String> = serde_json::from_str(&json).unwrap();
        assert!(!sentences.is_empty());
        for s in &sentences {
            check(s);
        }
        check(&sentences.join("\n"));
    }

    #[test]
    fn demo_prompts() {
        let Some(jsonl) = data_file("../../python/routerx/data/demo_prompts.jsonl") else { return };
        let prompts: Vec<String> = jsonl
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["prompt"].as_str().unwrap().to_owned())
            .collect();
        assert!(!prompts.is_empty());
        for p in &prompts {
            check(p);
        }
        check(&prompts.join("\n\n"));
    }

    #[test]
    fn memo_overflow_stays_exact() {
        // More distinct short pieces than the memo holds, so it clears mid-text.
        let mut rng = fastrand::Rng::with_seed(7);
        let words: Vec<String> = (0..MEMO_CAP + 5_000)
            .map(|_| {
                let n = rng.usize(3..9);
                std::iter::repeat_with(|| rng.lowercase()).take(n).collect()
            })
            .collect();
        let text = words.join(" ");
        let expected = bpe_openai::o200k_base().count(text.as_str());
        assert_eq!(count(&text), expected);
        assert_eq!(count(&text), expected);
        assert_eq!(count("hello world"), 2);
    }

    #[test]
    fn long_pieces_bypass_memo() {
        check(&"a".repeat(200));
        check(&format!(" {}", "Supercalifragilisticexpialidocious".repeat(3)));
        check(&"!".repeat(100));
        check(&" ".repeat(100));
    }

    #[test]
    fn concurrent_counts_agree() {
        let mut rng = fastrand::Rng::with_seed(16);
        let mut texts: Vec<String> = (0..200).map(|_| random_text(&mut rng, ASCII_ALPHABET)).collect();
        texts.extend(NASTY.iter().map(|s| s.to_string()));
        texts.push("The quick brown fox jumps over the lazy dog. ".repeat(40));
        texts.push("Ünïcödé — “quotes” and 中文 mixed with ASCII words. ".repeat(10));
        let expected: Vec<usize> = texts.iter().map(|t| bpe_openai::o200k_base().count(t.as_str())).collect();
        std::thread::scope(|s| {
            for t in 0..16 {
                let (texts, expected) = (&texts, &expected);
                s.spawn(move || {
                    for round in 0..50 {
                        for k in 0..texts.len() {
                            let i = (k * 7 + t + round) % texts.len();
                            assert_eq!(count(&texts[i]), expected[i], "thread {t}: {:?}", texts[i]);
                        }
                    }
                });
            }
        });
    }
}

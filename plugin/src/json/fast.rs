//! The fast path of [`super::scan_object`]: a record indexed 64 bytes at a time with SIMD
//! (natively AVX-512BW, AVX2 or SSE2, whichever the CPU has, chosen at run time; simd128
//! under WASM), then walked from structural character to structural character instead of
//! byte by byte.
//!
//! Stage 1 classifies every byte into bit masks (quotes, `{[`, `}]:,`, digits, backslashes and
//! control characters, bytes beyond ASCII), finds which bytes are inside strings (a prefix XOR
//! of the quote mask), and keeps, per 64-byte block, the positions of quotes and of the
//! structural characters outside strings. Stage 2 checks the grammar by stepping through
//! those positions: a member is key quote, key quote, `:`, then a string (two quotes) or a
//! scalar (the bytes up to the next `,` or `}`), then `,` or `}`. Gaps between tokens must be
//! whitespace; scalars are `true`, `false`, `null` or a number, and plain numbers (`-12`,
//! `0.5`) are checked against the digit mask without a loop.
//!
//! It handles the common flow record: one flat object, no escapes, up to [`MAX_LEN`] bytes.
//! Anything else (nested values, a backslash, a longer record) is [`Fast::Unsupported`] before
//! a single member is reported, and the scalar parser takes the record. A record this path
//! finds invalid is [`Fast::Invalid`]; the scalar parser then names the error, so messages
//! and offsets are the same whichever path ran.

use super::{is_ws, Kind, Member, Object, Parser, Span};

/// Longest record the fast path takes (the masks live on the stack).
pub const MAX_LEN: usize = 8192;
const BLOCKS: usize = MAX_LEN / 64;

pub enum Fast {
    Done(Object),
    /// Not valid JSON; nothing can be said about members already reported.
    Invalid,
    /// Valid or not, a shape this path leaves to the scalar parser. No member was reported.
    Unsupported,
}

/// The classes of the 64 bytes of one block, one bit per byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Masks {
    pub quote: u64,
    /// Backslashes and control characters (bytes below 0x20).
    pub special: u64,
    /// `{` and `[`.
    pub open: u64,
    /// `{`, `[`, `}`, `]`, `:` and `,`.
    pub structural: u64,
    pub digit: u64,
    /// Bytes of 0x80 and above (so a record without any is ASCII, hence UTF-8).
    pub high: u64,
}

/// Classify 64 bytes, byte by byte: the reference the SIMD versions are tested against, and
/// the path on targets without them.
#[cfg(any(test, not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))))]
pub fn classify_scalar(block: &[u8; 64]) -> Masks {
    let mut m = Masks::default();
    for (i, &b) in block.iter().enumerate() {
        let bit = 1u64 << i;
        let set = |mask: &mut u64, on: bool| *mask |= if on { bit } else { 0 };
        set(&mut m.quote, b == b'"');
        set(&mut m.special, b == b'\\' || b < 0x20);
        set(&mut m.open, b == b'{' || b == b'[');
        set(&mut m.structural, matches!(b, b'{' | b'[' | b'}' | b']' | b':' | b','));
        set(&mut m.digit, b.is_ascii_digit());
        set(&mut m.high, !b.is_ascii());
    }
    m
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn classify(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::*;
    let mut m = Masks::default();
    // SAFETY: SSE2 is part of x86_64; every load reads 16 bytes inside `block`.
    unsafe {
        let splat = |c: u8| _mm_set1_epi8(c as i8);
        for k in 0..4 {
            let x = _mm_loadu_si128(block.as_ptr().add(16 * k).cast());
            let eq = |c: u8| _mm_cmpeq_epi8(x, splat(c));
            // `{` and `[` (and `}` and `]`) differ only in bit 0x20.
            let folded = _mm_or_si128(x, splat(0x20));
            let open = _mm_cmpeq_epi8(folded, splat(b'{'));
            let close = _mm_cmpeq_epi8(folded, splat(b'}'));
            let structural = _mm_or_si128(_mm_or_si128(open, close), _mm_or_si128(eq(b':'), eq(b',')));
            // Unsigned `x <= 0x1f` and `x - '0' <= 9` as `min(x, c) == x`.
            let control = _mm_cmpeq_epi8(_mm_min_epu8(x, splat(0x1f)), x);
            let special = _mm_or_si128(eq(b'\\'), control);
            let d = _mm_sub_epi8(x, splat(b'0'));
            let digit = _mm_cmpeq_epi8(_mm_min_epu8(d, splat(9)), d);
            let bits = |v: __m128i| (_mm_movemask_epi8(v) as u32 as u64) << (16 * k);
            m.quote |= bits(eq(b'"'));
            m.special |= bits(special);
            m.open |= bits(open);
            m.structural |= bits(structural);
            m.digit |= bits(digit);
            m.high |= bits(x);
        }
    }
    m
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
pub fn classify(block: &[u8; 64]) -> Masks {
    use std::arch::wasm32::*;
    let mut m = Masks::default();
    for k in 0..4 {
        // SAFETY: reads 16 bytes inside `block`; v128_load has no alignment requirement.
        let x = unsafe { v128_load(block.as_ptr().add(16 * k).cast()) };
        let eq = |c: u8| i8x16_eq(x, u8x16_splat(c));
        let folded = v128_or(x, u8x16_splat(0x20));
        let open = i8x16_eq(folded, u8x16_splat(b'{'));
        let close = i8x16_eq(folded, u8x16_splat(b'}'));
        let structural = v128_or(v128_or(open, close), v128_or(eq(b':'), eq(b',')));
        let special = v128_or(eq(b'\\'), u8x16_le(x, u8x16_splat(0x1f)));
        let digit = u8x16_le(i8x16_sub(x, u8x16_splat(b'0')), u8x16_splat(9));
        let bits = |v: v128| u64::from(i8x16_bitmask(v)) << (16 * k);
        m.quote |= bits(eq(b'"'));
        m.special |= bits(special);
        m.open |= bits(open);
        m.structural |= bits(structural);
        m.digit |= bits(digit);
        m.high |= bits(x);
    }
    m
}

#[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
#[inline(always)]
pub fn classify(block: &[u8; 64]) -> Masks {
    classify_scalar(block)
}

/// Bit i set when an odd number of bits at or below i are set in `x`: with `x` the quotes,
/// the bytes from an opening quote up to (not including) its closing quote.
#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

#[inline(always)]
fn ws_only(s: &[u8]) -> bool {
    s.iter().all(|&b| is_ws(b))
}

/// The indexed positions, in order.
struct Positions<'a> {
    blocks: &'a [u64],
    k: usize,
    bits: u64,
}

impl Positions<'_> {
    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        while self.bits == 0 {
            self.k += 1;
            self.bits = *self.blocks.get(self.k)?;
        }
        let at = self.k * 64 + self.bits.trailing_zeros() as usize;
        self.bits &= self.bits - 1;
        Some(at)
    }
}

/// How stage 1 classifies a block: [`classify`], or a wider x86 version chosen at run time.
trait Classifier {
    /// # Safety
    /// The CPU has the instructions the implementation uses.
    unsafe fn classify(block: &[u8; 64]) -> Masks;
}

struct Baseline;

impl Classifier for Baseline {
    #[inline(always)]
    unsafe fn classify(block: &[u8; 64]) -> Masks {
        classify(block)
    }
}

pub fn scan(s: &[u8], member: &mut impl FnMut(Member)) -> Fast {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: the CPU has AVX-512BW.
            return unsafe { x86::scan_avx512(s, member) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { x86::scan_avx2(s, member) };
        }
    }
    // SAFETY: the baseline classifier needs nothing beyond the target's own features.
    unsafe { scan_with::<Baseline>(s, member) }
}

/// # Safety
/// The CPU has what `C` needs.
#[inline(always)]
unsafe fn scan_with<C: Classifier>(s: &[u8], member: &mut impl FnMut(Member)) -> Fast {
    // Mask arrays sized to the record: zeroing room for 8 KB costs more than scanning 200 B.
    match s.len().div_ceil(64) {
        0..=8 => scan_blocks::<C, 8, 9>(s, member),
        9..=32 => scan_blocks::<C, 32, 33>(s, member),
        _ => scan_blocks::<C, BLOCKS, { BLOCKS + 1 }>(s, member),
    }
}

/// AVX2 and AVX-512 classifiers, and [`scan`] compiled for each.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{scan_with, Classifier, Fast, Masks, Member};

    pub struct Avx2;
    pub struct Avx512;

    impl Classifier for Avx2 {
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn classify(block: &[u8; 64]) -> Masks {
            let mut m = Masks::default();
            for k in 0..2 {
                let x = _mm256_loadu_si256(block.as_ptr().add(32 * k).cast());
                let folded = _mm256_or_si256(x, _mm256_set1_epi8(0x20));
                let open = _mm256_cmpeq_epi8(folded, _mm256_set1_epi8(b'{' as i8));
                let close = _mm256_cmpeq_epi8(folded, _mm256_set1_epi8(b'}' as i8));
                let punct = _mm256_or_si256(
                    _mm256_cmpeq_epi8(x, _mm256_set1_epi8(b':' as i8)),
                    _mm256_cmpeq_epi8(x, _mm256_set1_epi8(b',' as i8)),
                );
                let structural = _mm256_or_si256(_mm256_or_si256(open, close), punct);
                let low = _mm256_set1_epi8(0x1f);
                let control = _mm256_cmpeq_epi8(_mm256_min_epu8(x, low), x);
                let special = _mm256_or_si256(_mm256_cmpeq_epi8(x, _mm256_set1_epi8(b'\\' as i8)), control);
                let d = _mm256_sub_epi8(x, _mm256_set1_epi8(b'0' as i8));
                let digit = _mm256_cmpeq_epi8(_mm256_min_epu8(d, _mm256_set1_epi8(9)), d);
                let quote = _mm256_cmpeq_epi8(x, _mm256_set1_epi8(b'"' as i8));
                let shift = 32 * k as u32;
                m.quote |= (_mm256_movemask_epi8(quote) as u32 as u64) << shift;
                m.special |= (_mm256_movemask_epi8(special) as u32 as u64) << shift;
                m.open |= (_mm256_movemask_epi8(open) as u32 as u64) << shift;
                m.structural |= (_mm256_movemask_epi8(structural) as u32 as u64) << shift;
                m.digit |= (_mm256_movemask_epi8(digit) as u32 as u64) << shift;
                m.high |= (_mm256_movemask_epi8(x) as u32 as u64) << shift;
            }
            m
        }
    }

    impl Classifier for Avx512 {
        #[inline]
        #[target_feature(enable = "avx512bw")]
        unsafe fn classify(block: &[u8; 64]) -> Masks {
            let x = _mm512_loadu_si512(block.as_ptr().cast());
            let folded = _mm512_or_si512(x, _mm512_set1_epi8(0x20));
            let open = _mm512_cmpeq_epi8_mask(folded, _mm512_set1_epi8(b'{' as i8));
            let close = _mm512_cmpeq_epi8_mask(folded, _mm512_set1_epi8(b'}' as i8));
            let punct = _mm512_cmpeq_epi8_mask(x, _mm512_set1_epi8(b':' as i8))
                | _mm512_cmpeq_epi8_mask(x, _mm512_set1_epi8(b',' as i8));
            let d = _mm512_sub_epi8(x, _mm512_set1_epi8(b'0' as i8));
            Masks {
                quote: _mm512_cmpeq_epi8_mask(x, _mm512_set1_epi8(b'"' as i8)),
                special: _mm512_cmpeq_epi8_mask(x, _mm512_set1_epi8(b'\\' as i8))
                    | _mm512_cmple_epu8_mask(x, _mm512_set1_epi8(0x1f)),
                open,
                structural: open | close | punct,
                digit: _mm512_cmple_epu8_mask(d, _mm512_set1_epi8(9)),
                high: _mm512_movepi8_mask(x),
            }
        }
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn scan_avx2(s: &[u8], member: &mut impl FnMut(Member)) -> Fast {
        scan_with::<Avx2>(s, member)
    }

    #[target_feature(enable = "avx512bw")]
    pub unsafe fn scan_avx512(s: &[u8], member: &mut impl FnMut(Member)) -> Fast {
        scan_with::<Avx512>(s, member)
    }

    /// Every classifier this CPU can run, for the tests.
    #[cfg(test)]
    pub fn available() -> Vec<(&'static str, fn(&[u8; 64]) -> Masks)> {
        let mut v: Vec<(&'static str, fn(&[u8; 64]) -> Masks)> = vec![("sse2", super::classify)];
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: checked just above.
            v.push(("avx2", |b| unsafe { Avx2::classify(b) }));
        }
        if std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: checked just above.
            v.push(("avx512bw", |b| unsafe { Avx512::classify(b) }));
        }
        v
    }
}

/// [`scan`] with room for `N` blocks (`D` = `N + 1`: one spare word, since numbers read their
/// digit bits two words at a time).
///
/// # Safety
/// The CPU has what `C` needs.
#[inline(always)]
unsafe fn scan_blocks<C: Classifier, const N: usize, const D: usize>(
    s: &[u8],
    member: &mut impl FnMut(Member),
) -> Fast {
    debug_assert!(s.len() <= N * 64 && D == N + 1);
    let n_blocks = s.len().div_ceil(64);
    let mut index = [0u64; N];
    let mut digits = [0u64; D];
    let mut inside_carry = 0u64;
    let mut opens = 0;
    let mut high = 0;
    for k in 0..n_blocks {
        let start = k * 64;
        let m = match s.get(start..start + 64) {
            Some(full) => C::classify(full.try_into().expect("64 bytes")),
            None => {
                // The last, short block, padded with spaces (which belong to no class).
                let mut last = [b' '; 64];
                last[..s.len() - start].copy_from_slice(&s[start..]);
                C::classify(&last)
            }
        };
        let inside = prefix_xor(m.quote) ^ inside_carry;
        inside_carry = ((inside as i64) >> 63) as u64;
        if m.special != 0 {
            let mut bits = m.special;
            while bits != 0 {
                let at = bits.trailing_zeros();
                if s[start + at as usize] == b'\\' {
                    return Fast::Unsupported;
                }
                bits &= bits - 1;
            }
            // A control character inside a string (outside, only whitespace may be one, and
            // stage 2 checks every byte between tokens).
            if m.special & inside & !m.quote != 0 {
                return Fast::Invalid;
            }
        }
        opens += (m.open & !inside).count_ones();
        high |= m.high;
        index[k] = (m.structural & !inside) | m.quote;
        digits[k] = m.digit;
    }
    if inside_carry != 0 {
        return Fast::Invalid;
    }
    if opens != 1 {
        // Nested objects or arrays, or no object at all: the scalar parser's.
        return Fast::Unsupported;
    }
    match walk(s, &index[..n_blocks], &digits, high == 0, member) {
        Some(object) => Fast::Done(object),
        None => Fast::Invalid,
    }
}

/// Stage 2: the grammar of one flat object over the indexed positions (`ascii`, stage 1's
/// finding that no byte is beyond ASCII, goes into the object as it is).
#[inline(always)]
fn walk(s: &[u8], index: &[u64], digits: &[u64], ascii: bool, member: &mut impl FnMut(Member)) -> Option<Object> {
    let mut at = Positions { blocks: index, k: 0, bits: index[0] };
    let open = at.next()?;
    if s[open] != b'{' || !ws_only(&s[..open]) {
        return None;
    }
    let mut members = 0;
    let mut after = open + 1;
    let mut p = at.next()?;
    let close = if s[p] == b'}' {
        ws_only(&s[after..p]).then_some(p)?
    } else {
        loop {
            // Key: an opening quote; the next position is its closing quote.
            if s[p] != b'"' || !ws_only(&s[after..p]) {
                return None;
            }
            let q = at.next()?;
            let key = Span { kind: Kind::String { escaped: false }, start: p, end: q + 1 };
            let colon = at.next()?;
            if s[colon] != b':' || !ws_only(&s[q + 1..colon]) {
                return None;
            }
            let v = at.next()?;
            let (value, end) = if s[v] == b'"' {
                if !ws_only(&s[colon + 1..v]) {
                    return None;
                }
                let w = at.next()?;
                let e = at.next()?;
                if !ws_only(&s[w + 1..e]) {
                    return None;
                }
                (Span { kind: Kind::String { escaped: false }, start: v, end: w + 1 }, e)
            } else {
                (scalar(s, digits, colon + 1, v)?, v)
            };
            member(Member { key, value });
            members += 1;
            match s[end] {
                b',' => {
                    after = end + 1;
                    p = at.next()?;
                }
                b'}' => break end,
                _ => return None,
            }
        }
    };
    if at.next().is_some() || !ws_only(&s[close + 1..]) {
        return None;
    }
    Some(Object { open, close, members, ascii })
}

/// The scalar between `a` and `b` (whitespace around it allowed): a literal or a number.
#[inline(always)]
fn scalar(s: &[u8], digits: &[u64], mut a: usize, mut b: usize) -> Option<Span> {
    while a < b && is_ws(s[a]) {
        a += 1;
    }
    while b > a && is_ws(s[b - 1]) {
        b -= 1;
    }
    let text = &s[a..b];
    let first = *text.first()?;
    // Numbers first, and by comparisons: LLVM makes a `match` on the first byte a jump table,
    // which Cranelift compiles to an indirect jump, the costliest branch of a record under WASM.
    let kind = if first.is_ascii_digit() || first == b'-' {
        if !number(s, digits, a, b) {
            return None;
        }
        Kind::Number
    } else if text == b"true" {
        Kind::True
    } else if text == b"false" {
        Kind::False
    } else if text == b"null" {
        Kind::Null
    } else {
        return None;
    };
    Some(Span { kind, start: a, end: b })
}

/// Whether `s[a..b]` is exactly one JSON number. Integers and plain decimals are read off the
/// digit mask; exponents and the unusual go to the scalar parser's number rule.
#[inline(always)]
fn number(s: &[u8], digits: &[u64], a: usize, b: usize) -> bool {
    let i = a + usize::from(s[a] == b'-');
    let len = b - i;
    if (1..=56).contains(&len) {
        let (w, o) = (i / 64, i % 64);
        let mut window = digits[w] >> o;
        if o != 0 {
            window |= digits[w + 1] << (64 - o);
        }
        let span = (1u64 << len) - 1;
        let other = !window & span;
        let leading_zero = s[i] == b'0';
        if other == 0 {
            return !leading_zero || len == 1;
        }
        if other & (other - 1) == 0 {
            let dot = other.trailing_zeros() as usize;
            if s[i + dot] == b'.' && dot >= 1 && dot + 1 < len {
                return !leading_zero || dot == 1;
            }
        }
    }
    let mut p = Parser { s: &s[..b], i: a };
    p.number().is_ok() && p.i == b
}

#[cfg(test)]
mod tests {
    use super::super::{scan_object, scan_scalar};
    use super::*;
    use crate::test_rng::Rng;

    /// Check both parsers agree on `s`; returns which way the fast path went (0 done,
    /// 1 invalid, 2 left to the scalar parser).
    fn agree(s: &[u8]) -> usize {
        if let Err(e) = super::super::check_fast_path(s) {
            panic!("{e}: {:?}", String::from_utf8_lossy(s));
        }
        let r = scan_scalar(s, |_| {});
        // Whatever the fast path decided by itself must be what the scalar parser says.
        if s.len() > MAX_LEN {
            return 2;
        }
        let mut members = Vec::new();
        match scan(s, &mut |m| members.push(m)) {
            Fast::Done(o) => {
                let mut slow = Vec::new();
                let r = scan_scalar(s, |m| slow.push(m));
                assert_eq!(Ok((o, members)), r.map(|o| (o, slow)), "{:?}", String::from_utf8_lossy(s));
                0
            }
            Fast::Invalid => {
                assert!(r.is_err(), "fast path refused valid {:?}", String::from_utf8_lossy(s));
                1
            }
            Fast::Unsupported => {
                assert!(members.is_empty());
                2
            }
        }
    }

    const SEEDS: &[&str] = &[
        r#"{"id":1,"dur":0.947725,"proto":"udp","service":"-","spkts":154,"sload":213192.594662,"label":1}"#,
        r#"{"dur": 0.3912831411444515, "proto": "udp", "sttl": 62, "rate": 51.1138812203936, "x": null}"#,
        "  {\t\"a\" : -0.5 ,\r\n \"b\" :true, \"c\":false,\"d\":\"\",\"e\":0}  ",
        r#"{"ts":1.7e9,"n":-12,"z":0,"big":12345678901234567890123456789012345678901234567890123456789,"s":"é ü"}"#,
        r#"{"nested":{"a":[1,2]},"esc":"q\"u","after":3}"#,
        "{}",
    ];

    #[test]
    fn agrees_with_the_scalar_parser_on_seeds_and_edges() {
        for seed in SEEDS {
            agree(seed.as_bytes());
        }
        for case in [
            "{\"a\":1.}",
            "{\"a\":.5}",
            "{\"a\":01}",
            "{\"a\":-}",
            "{\"a\":-01.5}",
            "{\"a\":0.5.1}",
            "{\"a\":1 2}",
            "{\"a\":tru}",
            "{\"a\":truex}",
            "{\"a\":nul}",
            "{\"a\" \"b\"}",
            "{\"a\":\"x\" \"y\"}",
            "{\"a\":\"x\"1}",
            "{\"a\":1}x",
            "{\"a\":1} \"x\"",
            "{\"a\"::1}",
            "{,}",
            "{\"a\":1,}",
            "{\"a\":}",
            "{\"a\":1]",
            "{\"a\":\"x",
            "{\"a\":\"tab\there\"}",
            "{\"a\":\"x\"}\n",
            "\n{\"a\":1}",
            "{\"a\":1e5}",
            "{\"a\":-0}",
            "{\"a\":-0.0e-1}",
            "{\"a\":1}{}",
            "[1]",
            "",
            "{",
            "}",
            "\"{\"",
            "{\"a\":\x01}",
            "{\"a\":1\x01}",
            "{\"a\"\x01:1}",
        ] {
            agree(case.as_bytes());
        }
        // Records across block boundaries, and longer than the fast path takes.
        for len in [60, 63, 64, 65, 127, 128, 129, 511, 512, 513, 2047, 2048, 2049, MAX_LEN - 1, MAX_LEN, MAX_LEN + 1] {
            let mut s = String::from("{\"pad\":\"");
            while s.len() + 9 < len {
                s.push('x');
            }
            s.push_str("\",\"n\":7}");
            while s.len() < len {
                s.insert(s.len() - 1, ' ');
            }
            agree(s.as_bytes());
            // A number straddling the boundary.
            for cut in 1..12 {
                let t = format!("{{\"p\":\"{}\",\"n\":-1234567.125}}", "y".repeat(len.saturating_sub(cut + 20)));
                agree(t.as_bytes());
            }
        }
    }

    #[test]
    fn agrees_with_the_scalar_parser_and_serde_on_mutated_records() {
        const ALPHABET: &[u8] = b"{}[]:,\"\\ \t\n-+.eE0123456789tfnulrsaxyz\x01\x1f\x7f\xc3\xa9";
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut ways = [0; 3];
        for round in 0..40_000 {
            let mut s = SEEDS[round % SEEDS.len()].as_bytes().to_vec();
            for _ in 0..1 + rng.index(3) {
                let at = rng.index(s.len() + 1);
                let c = ALPHABET[rng.index(ALPHABET.len())];
                match rng.index(3) {
                    0 => s.insert(at, c),
                    1 if at < s.len() => s[at] = c,
                    _ if at < s.len() => {
                        s.remove(at);
                    }
                    _ => s.push(c),
                }
            }
            ways[agree(&s)] += 1;
            if std::str::from_utf8(&s).is_ok() {
                let serde = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&s);
                // serde_json refuses numbers it cannot hold (`1e999999`); JSON does not.
                if !serde.as_ref().is_err_and(|e| e.to_string().contains("out of range")) {
                    assert_eq!(scan_object(&s, |_| {}).is_ok(), serde.is_ok(), "{:?}", String::from_utf8_lossy(&s));
                }
            }
        }
        // The fast path took a real share of both the valid and the broken records.
        assert!(ways.iter().all(|&n| n > 2_000), "done / invalid / left to the scalar parser: {ways:?}");
    }

    #[test]
    fn simd_classes_match_the_byte_by_byte_ones() {
        let mut rng = Rng(42);
        for _ in 0..2_000 {
            let mut block = [0u8; 64];
            for b in &mut block {
                // Half the time a JSON-significant byte, else any byte.
                *b = if rng.index(2) == 0 {
                    {
                        const SIGNIFICANT: &[u8] = b"{}[]:,\"\\ 09/-\x1f\x20";
                        SIGNIFICANT[rng.index(SIGNIFICANT.len())]
                    }
                } else {
                    rng.next() as u8
                };
            }
            assert_eq!(classify(&block), classify_scalar(&block), "{block:?}");
            #[cfg(target_arch = "x86_64")]
            for (name, wide) in x86::available() {
                assert_eq!(wide(&block), classify_scalar(&block), "{name}: {block:?}");
            }
        }
    }
}

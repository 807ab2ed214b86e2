//! Scrub (optional, before tokenize): note text → text with PHI replaced by typed placeholders.
//!
//! Finds dates, phone and fax numbers, e-mail addresses, URLs, MRN-like ids, ages over 89 and
//! names from a user-supplied list, and replaces each with a placeholder (`[DATE]`, `[PHONE]`,
//! `[FAX]`, `[EMAIL]`, `[URL]`, `[MRN]`, `[AGE>89]`, `[NAME]`). The result reports counts per
//! kind and keeps an offset map, so spans of the scrubbed text (token offsets, window bounds)
//! map back to UTF-8 byte offsets in the original note. The same code runs natively (training)
//! and in the browser (wasm32).
//!
//! Patterns are precise rather than greedy: clinical numbers such as `bp 150/90`, `3/10 pain`,
//! `HbA1c 7.2%`, `E11.22` or `metformin 500 mg` are left alone. It is a best-effort filter for
//! Safe Harbor-style identifiers, not a guarantee: see the tests for what it catches.
//!
//! Overlapping matches: the earliest starting one wins, then the longest; text is never
//! replaced twice. Nothing here logs, and errors never contain note text or names.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::OnceLock;

use regex::{Captures, Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A kind of PHI the scrubber recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhiKind {
    /// Full dates and day + month (numeric, ISO, with month names, 2024年3月1日); a year alone stays.
    Date,
    /// US and international phone numbers.
    Phone,
    /// A phone number after a "fax" label.
    Fax,
    Email,
    /// http(s)/ftp URLs and www. addresses.
    Url,
    /// Labelled record, account and patient ids, bare runs of 7+ digits, and SSNs.
    Mrn,
    /// Ages of 90 and over (the number only: "[AGE>89]-year-old").
    #[serde(rename = "age_over_89")]
    AgeOver89,
    /// Names from the list given to [`Scrubber::with_names`].
    Name,
}

impl PhiKind {
    pub const ALL: [PhiKind; 8] = [
        PhiKind::Date,
        PhiKind::Phone,
        PhiKind::Fax,
        PhiKind::Email,
        PhiKind::Url,
        PhiKind::Mrn,
        PhiKind::AgeOver89,
        PhiKind::Name,
    ];

    /// Stable snake_case name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            PhiKind::Date => "date",
            PhiKind::Phone => "phone",
            PhiKind::Fax => "fax",
            PhiKind::Email => "email",
            PhiKind::Url => "url",
            PhiKind::Mrn => "mrn",
            PhiKind::AgeOver89 => "age_over_89",
            PhiKind::Name => "name",
        }
    }

    /// The text that replaces a match of this kind.
    pub fn placeholder(self) -> &'static str {
        match self {
            PhiKind::Date => "[DATE]",
            PhiKind::Phone => "[PHONE]",
            PhiKind::Fax => "[FAX]",
            PhiKind::Email => "[EMAIL]",
            PhiKind::Url => "[URL]",
            PhiKind::Mrn => "[MRN]",
            PhiKind::AgeOver89 => "[AGE>89]",
            PhiKind::Name => "[NAME]",
        }
    }
}

impl fmt::Display for PhiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which kinds a [`Scrubber`] looks for. Default: all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScrubOptions {
    pub kinds: BTreeSet<PhiKind>,
}

impl Default for ScrubOptions {
    fn default() -> Self {
        Self::all()
    }
}

impl ScrubOptions {
    pub fn all() -> Self {
        Self { kinds: PhiKind::ALL.into_iter().collect() }
    }

    pub fn only(kinds: impl IntoIterator<Item = PhiKind>) -> Self {
        Self { kinds: kinds.into_iter().collect() }
    }

    pub fn without(mut self, kind: PhiKind) -> Self {
        self.kinds.remove(&kind);
        self
    }
}

/// How a model's training text was scrubbed, recorded in its checkpoint's serving settings and
/// its bundle's manifest (field `scrub`) so that serving scrubs each note the same way before
/// tokenizing it. Holds no names: a names list is PHI itself, so only the fact that one was
/// used is kept, and serving applies the pattern kinds only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubSettings {
    /// The kinds the training scrubber looked for (absent: all of them, as `ScrubOptions`).
    #[serde(default = "all_kinds")]
    pub kinds: BTreeSet<PhiKind>,
    /// Training also replaced the names of a user-supplied list with `[NAME]`. The list is
    /// not stored, so serving cannot replace them unless it is given the list again.
    #[serde(default)]
    pub names_list: bool,
}

fn all_kinds() -> BTreeSet<PhiKind> {
    ScrubOptions::all().kinds
}

impl ScrubSettings {
    pub fn new(options: &ScrubOptions, names_list: bool) -> Self {
        Self { kinds: options.kinds.clone(), names_list }
    }

    pub fn options(&self) -> ScrubOptions {
        ScrubOptions { kinds: self.kinds.clone() }
    }

    /// The scrubber serving uses: these kinds, no names.
    pub fn scrubber(&self) -> Scrubber {
        Scrubber::new(self.options())
    }
}

/// One replaced span: `original_*` are byte offsets into the input, `scrubbed_*` into
/// [`Scrubbed::text`] (the placeholder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Replacement {
    pub kind: PhiKind,
    pub original_start: usize,
    pub original_end: usize,
    pub scrubbed_start: usize,
    pub scrubbed_end: usize,
}

/// The scrubbed text, what was replaced (in text order) and how many of each kind.
/// `counts` holds only kinds that occurred.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Scrubbed {
    pub text: String,
    pub replacements: Vec<Replacement>,
    pub counts: BTreeMap<PhiKind, usize>,
}

impl Scrubbed {
    pub fn count(&self, kind: PhiKind) -> usize {
        self.counts.get(&kind).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.replacements.len()
    }

    /// Maps a byte offset in the scrubbed text to one in the original text. Offsets inside a
    /// placeholder map to the start of the original span; offsets past the end keep their
    /// distance from it.
    pub fn to_original(&self, scrubbed_offset: usize) -> usize {
        let i = self.replacements.partition_point(|r| r.scrubbed_start <= scrubbed_offset);
        match i.checked_sub(1).map(|i| &self.replacements[i]) {
            None => scrubbed_offset,
            Some(r) if scrubbed_offset < r.scrubbed_end => r.original_start,
            Some(r) => r.original_end + (scrubbed_offset - r.scrubbed_end),
        }
    }

    /// Maps a half-open span `[start, end)` of the scrubbed text to the original: a span that
    /// ends inside a placeholder ends where the original span ends, so a token of `[DATE]`
    /// covers the whole date.
    pub fn to_original_span(&self, start: usize, end: usize) -> (usize, usize) {
        let original_start = self.to_original(start);
        if end <= start {
            return (original_start, original_start);
        }
        let i = self.replacements.partition_point(|r| r.scrubbed_start < end);
        let original_end = match i.checked_sub(1).map(|i| &self.replacements[i]) {
            Some(r) if end <= r.scrubbed_end => r.original_end,
            _ => self.to_original(end),
        };
        (original_start, original_end)
    }
}

/// Replaces PHI with placeholders; cheap to clone, built-in patterns are compiled once.
#[derive(Clone)]
pub struct Scrubber {
    kinds: BTreeSet<PhiKind>,
    names: Vec<String>,
    name_pattern: Option<Regex>,
}

impl fmt::Debug for Scrubber {
    // Names are user data (PHI): only their number is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrubber").field("kinds", &self.kinds).field("names", &self.names.len()).finish()
    }
}

impl Default for Scrubber {
    fn default() -> Self {
        Self::new(ScrubOptions::default())
    }
}

impl Scrubber {
    pub fn new(options: ScrubOptions) -> Self {
        Self { kinds: options.kinds, names: Vec::new(), name_pattern: None }
    }

    /// Adds names to replace with `[NAME]`: matched case-insensitively as whole words, any run
    /// of whitespace inside a name matching any run in the text. Names shorter than 2
    /// characters are ignored. Fails (without naming any name) if the list is too large to
    /// compile into one pattern.
    pub fn with_names<I, S>(mut self, names: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut seen: BTreeSet<String> = self.names.iter().map(|n| n.to_lowercase()).collect();
        for name in names {
            let words: Vec<&str> = name.as_ref().split_whitespace().collect();
            let name = words.join(" ");
            if name.chars().count() >= 2 && seen.insert(name.to_lowercase()) {
                self.names.push(name);
            }
        }
        self.name_pattern = name_pattern(&self.names)?;
        Ok(self)
    }

    pub fn kinds(&self) -> &BTreeSet<PhiKind> {
        &self.kinds
    }

    pub fn name_count(&self) -> usize {
        self.names.len()
    }

    /// Scrubs one note. Never fails: text that matches nothing comes back unchanged.
    pub fn scrub(&self, text: &str) -> Scrubbed {
        let mut found = Vec::new();
        let p = patterns();
        let on = |kind| self.kinds.contains(&kind);
        if on(PhiKind::Email) {
            find_emails(p, text, &mut found);
        }
        if on(PhiKind::Url) {
            find_urls(p, text, &mut found);
        }
        if on(PhiKind::Phone) || on(PhiKind::Fax) {
            find_phones(p, text, on(PhiKind::Phone), on(PhiKind::Fax), &mut found);
        }
        if on(PhiKind::Date) {
            find_dates(p, text, &mut found);
        }
        if on(PhiKind::Mrn) {
            find_mrns(p, text, &mut found);
        }
        if on(PhiKind::AgeOver89) {
            find_ages(p, text, &mut found);
        }
        if let (true, Some(re)) = (on(PhiKind::Name), &self.name_pattern) {
            for (start, end) in scan(re, text, true, |c| c.get(0).map(|m| (m.start(), m.end()))) {
                found.push(Candidate { start, end, kind: PhiKind::Name, rank: RANK_NAME });
            }
        }
        build(text, resolve(text, found))
    }
}

fn name_pattern(names: &[String]) -> Result<Option<Regex>> {
    if names.is_empty() {
        return Ok(None);
    }
    // Longest first: at one position the regex takes the first alternative that matches.
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort_by(|a, b| b.chars().count().cmp(&a.chars().count()).then_with(|| a.cmp(b)));
    let alternatives: Vec<String> = sorted
        .iter()
        .map(|name| {
            let body = name.split(' ').map(regex::escape).collect::<Vec<_>>().join(r"\s+");
            // `\b` only where the name's edge is a word character (see `is_word`).
            let edge = |c: Option<char>| if c.is_some_and(is_word) { r"\b" } else { "" };
            format!("{}{body}{}", edge(name.chars().next()), edge(name.chars().next_back()))
        })
        .collect();
    let pattern = format!("(?:{})", alternatives.join("|"));
    RegexBuilder::new(&pattern)
        .case_insensitive(true)
        .size_limit(64 << 20)
        .dfa_size_limit(16 << 20)
        .build()
        .map(Some)
        .map_err(|_| {
            // The regex error quotes the pattern, which is made of names: never pass it on.
            Error::config("scrub.names", format!("{} names do not fit in one pattern; pass fewer", names.len()))
        })
}

/// Letters of scripts written without spaces between words (Chinese, Japanese, Thai, …): there
/// a name or number touches the words around it, so they do not count as word characters.
fn is_unspaced(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF // Thai, Lao
        | 0x1000..=0x109F // Myanmar
        | 0x1780..=0x17FF // Khmer
        | 0x3040..=0x30FF // Hiragana, Katakana
        | 0x3400..=0x4DBF // CJK extension A
        | 0x4E00..=0x9FFF // CJK unified ideographs
        | 0xF900..=0xFAFF // CJK compatibility ideographs
        | 0x20000..=0x3FFFF) // CJK extensions B–H
}

/// A character that would make a number or name touching it part of a longer word.
fn is_word(c: char) -> bool {
    (c.is_alphanumeric() || c == '_') && !is_unspaced(c)
}

// === Candidates and their resolution ===

/// Ties (same start, same length) go to the lower rank: a labelled match says more.
const RANK_EMAIL: u8 = 0;
const RANK_URL: u8 = 1;
const RANK_PHONE_LABELLED: u8 = 2;
const RANK_MRN_LABELLED: u8 = 3;
const RANK_DATE: u8 = 4;
const RANK_PHONE: u8 = 5;
const RANK_AGE: u8 = 6;
const RANK_NAME: u8 = 7;
const RANK_MRN_BARE: u8 = 8;

#[derive(Debug, Clone, Copy)]
struct Candidate {
    start: usize,
    end: usize,
    kind: PhiKind,
    rank: u8,
}

/// Earliest start wins, then the longest, then the lower rank; later candidates that overlap a
/// winner are dropped.
fn resolve(text: &str, mut found: Vec<Candidate>) -> Vec<Candidate> {
    found.retain(|c| {
        c.start < c.end && c.end <= text.len() && text.is_char_boundary(c.start) && text.is_char_boundary(c.end)
    });
    found.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)).then(a.rank.cmp(&b.rank)));
    let mut winners: Vec<Candidate> = Vec::with_capacity(found.len());
    for c in found {
        if winners.last().is_none_or(|w| c.start >= w.end) {
            winners.push(c);
        }
    }
    winners
}

fn build(text: &str, winners: Vec<Candidate>) -> Scrubbed {
    let mut out = String::with_capacity(text.len());
    let mut replacements = Vec::with_capacity(winners.len());
    let mut counts = BTreeMap::new();
    let mut last = 0;
    for c in winners {
        out.push_str(&text[last..c.start]);
        let scrubbed_start = out.len();
        out.push_str(c.kind.placeholder());
        replacements.push(Replacement {
            kind: c.kind,
            original_start: c.start,
            original_end: c.end,
            scrubbed_start,
            scrubbed_end: out.len(),
        });
        *counts.entry(c.kind).or_insert(0) += 1;
        last = c.end;
    }
    out.push_str(&text[last..]);
    Scrubbed { text: out, replacements, counts }
}

// === Patterns ===

const MONTHS: &str = "jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?\
                      |sep(?:tember|t)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?";

/// Phone digits after a label: optional country code and bracketed area code, then one run of
/// 7–15 digits or groups of 1–8 digits separated by one space, dot or hyphen.
const PHONE_BODY: &str =
    r"(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{1,5}\)[ .-]?)?(?:[0-9]{7,15}|[0-9]{1,8}(?:[ .-][0-9]{1,8}){0,6})";

/// Unicode classes of scripts written without spaces (see `is_unspaced`).
const UNSPACED: &str = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}";

/// A URL character: RFC 3986 characters plus letters and digits of any script (IRIs). CJK
/// punctuation such as "，" or "。" ends a URL; CJK letters glued to it do not.
const URL_CHAR: &str = r"[\p{L}\p{N}\p{M}\-._~:/?#\[\]@!$&'()*+,;=%]";

struct Patterns {
    email: Regex,
    url: Regex,
    phone_labelled: Regex,
    phone_us: Regex,
    phone_intl: Regex,
    date_iso: Regex,
    date_numeric: Regex,
    date_month_year_numeric: Regex,
    date_month_day: Regex,
    date_day_month: Regex,
    date_month_year: Regex,
    date_cjk: Regex,
    mrn_labelled: Regex,
    mrn_bare: Regex,
    ssn: Regex,
    age_phrase: Regex,
    age_labelled: Regex,
    unit_after: Regex,
}

/// Joins pattern pieces and fills in `{MONTHS}`, `{UNSPACED}`, `{URL_CHAR}` and `{PHONE_BODY}`.
fn pattern(pieces: &[&str]) -> String {
    pieces
        .concat()
        .replace("{MONTHS}", MONTHS)
        .replace("{UNSPACED}", UNSPACED)
        .replace("{URL_CHAR}", URL_CHAR)
        .replace("{PHONE_BODY}", PHONE_BODY)
}

fn patterns() -> &'static Patterns {
    static PATTERNS: OnceLock<Patterns> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        // Built-in, constant patterns: a failure here is a bug caught by every test.
        // invariant: the patterns are constants, compiled by every scrub test.
        let re = |pieces: &[&str]| Regex::new(&pattern(pieces)).expect("built-in scrub pattern compiles");
        Patterns {
            email: re(&[
                r"[[\w.%+-]--[{UNSPACED}]]+",
                r"@[[\w-]--[{UNSPACED}]]+(?:\.[[\w-]--[{UNSPACED}]]+)*",
                r"\.[\p{L}--[{UNSPACED}]]{2,}",
            ]),
            url: re(&[
                r"(?i)(?-u:\b)(?:",
                r"(?:https?|ftp)://{URL_CHAR}+",
                r"|www\.[[\w-]--_]+(?:\.[[\w-]--_]+)*\.\p{L}{2,}(?:[/?#:]{URL_CHAR}*)?",
                r")",
            ]),
            phone_labelled: re(&[
                r"(?i)(?-u:\b)(fax|facsimile|telephone|tel|phone|cellphone|cell|mobile|pager)(?-u:\b)\.?",
                r"(?:\s*\((?:home|work|cell|mobile|office|main|h|w|c|m)\))?",
                r"(?:\s*(?:no|number|num|nr)(?-u:\b)\.?)?",
                r"\s*(?:#\s*)?[:=]?\s*(?:#\s*)?",
                r"({PHONE_BODY})",
            ]),
            phone_us: re(&[
                r"(?:\+?1[ .-]?)?\([0-9]{3}\)[ .-]?[0-9]{3}[ .-]?[0-9]{4}",
                r"|(?:(?-u:\b)1[.-])?(?-u:\b)[0-9]{3}[.-][0-9]{3}[.-][0-9]{4}",
            ]),
            phone_intl: re(&[r"\+[0-9]{1,3}(?:[ .-]?\([0-9]{1,5}\))?(?:[ .-]?[0-9]{1,5}){1,6}"]),
            date_iso: re(&[
                r"(?-u:\b)([0-9]{4})([-/.])([0-9]{1,2})([-/.])([0-9]{1,2})",
                r"(?:T[0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?",
            ]),
            date_numeric: re(&[r"(?-u:\b)([0-9]{1,2})([-/.])([0-9]{1,2})([-/.])([0-9]{4}|[0-9]{2})"]),
            date_month_year_numeric: re(&[r"(?-u:\b)([0-9]{1,2})/([0-9]{4})"]),
            date_month_day: re(&[
                r"(?i)(?-u:\b)(({MONTHS})(?-u:\b)\.?\s{1,3}([0-9]{1,2})(?:st|nd|rd|th)?)(?-u:\b)",
                r"(?:(?:\s*,\s*|\s{1,3})([0-9]{4})(?-u:\b))?",
            ]),
            date_day_month: re(&[
                r"(?i)(?-u:\b)(([0-9]{1,2})(?:st|nd|rd|th)?(?:\s+of)?(?:\s{1,3}|-)({MONTHS}))(?-u:\b)\.?",
                r"(?:(,?\s{1,3}|-)([0-9]{4}|[0-9]{2})(?-u:\b))?",
            ]),
            date_month_year: re(&[r"(?i)(?-u:\b)({MONTHS})(?-u:\b)\.?(?:\s+of)?,?\s{1,3}([0-9]{4})(?-u:\b)"]),
            date_cjk: re(&[r"(?-u:\b)([0-9]{4})\s?年\s?([0-9]{1,2})\s?月(?:\s?([0-9]{1,2})\s?[日号])?"]),
            mrn_labelled: re(&[
                r"(?i)(?-u:\b)(?:(?:mrn|medical\s+record(?:\s+(?:number|num|no))?|med\s+rec(?:\s+(?:number|num|no))?",
                r"|record\s+(?:number|num|no)|rec\s+(?:number|num|no)|account(?:\s+(?:number|num|no))?|acct",
                r"|patient\s+id|pt\s+id|id)(?-u:\b)\.?|mr\s*#)",
                r"\s*(?:#\s*)?[:=]?\s*(?:#\s*)?",
                r"([a-z]{1,3}-?[0-9]{5,10}|[0-9]{6,10})",
            ]),
            mrn_bare: re(&[r"(?-u:\b)[0-9]{7,}(?-u:\b)"]),
            ssn: re(&[r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)"]),
            age_phrase: re(&[
                r"(?i)(?-u:\b)([0-9]{2,3})\s{0,2}-?\s{0,2}",
                r"(?:y/o|y\.o\.?|yo[mf]?|(?:years?|yrs?\.?|y)\s{0,2}-?\s{0,2}old|years?\s+of\s+age|\s?岁)",
            ]),
            age_labelled: re(&[
                r"(?i)(?-u:\b)(?:age|aged)(?-u:\b)\s{0,3}(?:of\s+|[:=]\s{0,3}|is\s+)?([0-9]{2,3})(?-u:\b)",
            ]),
            unit_after: re(&[
                r"(?i)^\s{0,3}(?:%|/|(?:mg|mcg|ug|µg|μg|gm?|kg|ng|pg|ml|l|dl|ul|µl|μl|mmol|umol|µmol|mol|meq|iu|u",
                r"|units?|copies|cells|cfu|mm|cm|mmhg|min|mins|hrs?|hours?|days?|wks?|weeks?|tabs?|tablets?",
                r"|caps?|capsules?|puffs?|doses?|times|cc|mcl)\b)",
            ]),
        }
    })
}

/// Runs `re` over `text`; `accept` validates a match and returns the span to replace. After a
/// rejected match the search resumes one character after its start when `retry_inside`
/// (a shorter match may start there), else after its end.
fn scan(
    re: &Regex,
    text: &str,
    retry_inside: bool,
    mut accept: impl FnMut(&Captures<'_>) -> Option<(usize, usize)>,
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos <= text.len() {
        let Some(caps) = re.captures_at(text, pos) else { break };
        let Some(m) = caps.get(0) else { break };
        let after_start = next_boundary(text, m.start());
        match accept(&caps) {
            Some(span) => {
                out.push(span);
                pos = m.end().max(after_start);
            }
            None => pos = if retry_inside { after_start } else { m.end().max(after_start) },
        }
    }
    out
}

fn next_boundary(text: &str, i: usize) -> usize {
    i + text.get(i..).and_then(|s| s.chars().next()).map_or(1, char::len_utf8)
}

fn prev_char(text: &str, i: usize) -> Option<char> {
    text.get(..i)?.chars().next_back()
}

fn next_char(text: &str, i: usize) -> Option<char> {
    text.get(i..)?.chars().next()
}

/// No letter or digit (of any script) touches `i` from the left.
fn word_left_ok(text: &str, i: usize) -> bool {
    !prev_char(text, i).is_some_and(is_word)
}

/// A number starting at `i` is not the tail of a word, decimal, fraction or range.
fn num_left_ok(text: &str, i: usize) -> bool {
    match prev_char(text, i) {
        None => true,
        Some(c) if is_word(c) => false,
        Some(c @ ('.' | '/' | '-' | ',')) => !prev_char(text, i - c.len_utf8()).is_some_and(|d| d.is_ascii_digit()),
        Some(_) => true,
    }
}

/// A number ending at `i` is not followed by more of a word, decimal, fraction or range.
fn num_right_ok(text: &str, i: usize) -> bool {
    match next_char(text, i) {
        None => true,
        Some(c) if is_word(c) => false,
        Some(c @ ('.' | '/' | '-')) => !next_char(text, i + c.len_utf8()).is_some_and(|d| d.is_ascii_digit()),
        Some(_) => true,
    }
}

/// Not followed by a letter or digit, nor by a decimal point and digit.
fn word_right_ok(text: &str, i: usize) -> bool {
    match next_char(text, i) {
        None => true,
        Some(c) if is_word(c) => false,
        Some('.') => !next_char(text, i + 1).is_some_and(|d| d.is_ascii_digit()),
        Some(_) => true,
    }
}

fn followed_by_unit(p: &Patterns, text: &str, i: usize) -> bool {
    text.get(i..).is_some_and(|rest| p.unit_after.is_match(rest))
}

fn group_num(caps: &Captures<'_>, i: usize) -> Option<u32> {
    let s = caps.get(i)?.as_str();
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    s.parse().ok()
}

fn group_span(caps: &Captures<'_>, i: usize) -> Option<(usize, usize)> {
    caps.get(i).map(|m| (m.start(), m.end()))
}

fn whole(caps: &Captures<'_>) -> Option<(usize, usize)> {
    group_span(caps, 0)
}

fn push(found: &mut Vec<Candidate>, spans: Vec<(usize, usize)>, kind: PhiKind, rank: u8) {
    found.extend(spans.into_iter().map(|(start, end)| Candidate { start, end, kind, rank }));
}

// === Finders, one per kind ===

fn find_emails(p: &Patterns, text: &str, found: &mut Vec<Candidate>) {
    let spans = scan(&p.email, text, false, |caps| {
        let (start, end) = whole(caps)?;
        (!next_char(text, end).is_some_and(|c| is_word(c) || c == '-')).then_some((start, end))
    });
    push(found, spans, PhiKind::Email, RANK_EMAIL);
}

fn find_urls(p: &Patterns, text: &str, found: &mut Vec<Candidate>) {
    let spans = scan(&p.url, text, false, |caps| {
        let (start, mut end) = whole(caps)?;
        if !word_left_ok(text, start) {
            return None;
        }
        // Sentence punctuation and unbalanced closing brackets after a URL are not part of it.
        loop {
            let url = &text[start..end];
            let last = url.chars().next_back()?;
            let unbalanced =
                |open: char, close: char| last == close && url.matches(close).count() > url.matches(open).count();
            let trim = matches!(last, '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*')
                || unbalanced('(', ')')
                || unbalanced('[', ']');
            if !trim {
                break;
            }
            end -= last.len_utf8();
        }
        let rest = &text[start..end];
        (!rest.ends_with("://")).then_some((start, end))
    });
    push(found, spans, PhiKind::Url, RANK_URL);
}

/// Drops trailing digit groups of a phone number that make it too long or that are a dose
/// ("… 0958 20 mg"); `None` when fewer than `min` digits remain.
fn trim_phone(p: &Patterns, text: &str, start: usize, mut end: usize, min: usize, max: usize) -> Option<usize> {
    loop {
        let body = text.get(start..end)?;
        let digits = body.bytes().filter(u8::is_ascii_digit).count();
        let last_sep = body.rfind([' ', '.', '-']);
        let dose = followed_by_unit(p, text, end) && last_sep.is_some_and(|i| body.as_bytes()[i] == b' ');
        if digits > max || dose {
            end = start + last_sep?;
            continue;
        }
        return (digits >= min).then_some(end);
    }
}

fn find_phones(p: &Patterns, text: &str, phone_on: bool, fax_on: bool, found: &mut Vec<Candidate>) {
    for caps in p.phone_labelled.captures_iter(text) {
        let (Some(label), Some(number)) = (caps.get(1), caps.get(2)) else { continue };
        let is_fax = label.as_str().to_ascii_lowercase().starts_with("fa");
        // With Fax off a fax number is still a phone number.
        let kind = match (is_fax, fax_on, phone_on) {
            (true, true, _) => PhiKind::Fax,
            (_, _, true) => PhiKind::Phone,
            _ => continue,
        };
        if !word_left_ok(text, label.start()) || !num_right_ok(text, number.end()) {
            continue;
        }
        if let Some(end) = trim_phone(p, text, number.start(), number.end(), 7, 15) {
            found.push(Candidate { start: number.start(), end, kind, rank: RANK_PHONE_LABELLED });
        }
    }
    if !phone_on {
        return;
    }
    let us = scan(&p.phone_us, text, true, |caps| {
        let (start, end) = whole(caps)?;
        (num_left_ok(text, start) && num_right_ok(text, end)).then_some((start, end))
    });
    push(found, us, PhiKind::Phone, RANK_PHONE);
    let intl = scan(&p.phone_intl, text, true, |caps| {
        let (start, end) = whole(caps)?;
        if !num_left_ok(text, start) || !num_right_ok(text, end) {
            return None;
        }
        trim_phone(p, text, start, end, 8, 15).map(|end| (start, end))
    });
    push(found, intl, PhiKind::Phone, RANK_PHONE);
}

fn valid_year(y: u32) -> bool {
    (1800..=2199).contains(&y)
}

fn starts_uppercase(caps: &Captures<'_>, i: usize) -> bool {
    caps.get(i).and_then(|m| m.as_str().chars().next()).is_some_and(char::is_uppercase)
}

fn find_dates(p: &Patterns, text: &str, found: &mut Vec<Candidate>) {
    // 2024-03-01, 2024/03/01, 2024.03.01, optionally with an ISO time.
    let iso = scan(&p.date_iso, text, true, |caps| {
        let (start, end) = whole(caps)?;
        let same_sep = caps.get(2)?.as_str() == caps.get(4)?.as_str();
        let (y, mo, d) = (group_num(caps, 1)?, group_num(caps, 3)?, group_num(caps, 5)?);
        let ok = same_sep && valid_year(y) && (1..=12).contains(&mo) && (1..=31).contains(&d);
        (ok && num_left_ok(text, start) && num_right_ok(text, end)).then_some((start, end))
    });
    // 03/01/2024, 3/1/24, 01.03.2024, 1-3-2024 (month/day or day/month). Three parts, so
    // "150/90" and "3/10" never match.
    let numeric = scan(&p.date_numeric, text, true, |caps| {
        let (start, end) = whole(caps)?;
        let sep = caps.get(2)?.as_str();
        let (a, b) = (caps.get(1)?.as_str(), caps.get(3)?.as_str());
        let year = caps.get(5)?.as_str();
        let (x, y) = (group_num(caps, 1)?, group_num(caps, 3)?);
        let ok = sep == caps.get(4)?.as_str()
            && (((1..=12).contains(&x) && (1..=31).contains(&y)) || ((1..=31).contains(&x) && (1..=12).contains(&y)))
            && match year.len() {
                4 => valid_year(group_num(caps, 5)?),
                // "1.2.24" is more often a version or a list than a date.
                _ => sep != "." || (a.len() == 2 && b.len() == 2),
            };
        let ok = ok && num_left_ok(text, start) && num_right_ok(text, end) && !followed_by_unit(p, text, end);
        ok.then_some((start, end))
    });
    // 03/2024
    let month_year_numeric = scan(&p.date_month_year_numeric, text, true, |caps| {
        let (start, end) = whole(caps)?;
        let ok = (1..=12).contains(&group_num(caps, 1)?) && (1900..=2099).contains(&group_num(caps, 2)?);
        let ok = ok && num_left_ok(text, start) && num_right_ok(text, end) && !followed_by_unit(p, text, end);
        ok.then_some((start, end))
    });
    // March 1, 2024 / Mar 1st 2024 / Sept. 3 2024; without a year only when capitalised (so
    // "may 5" stays) and not a dose.
    let month_day = scan(&p.date_month_day, text, true, |caps| {
        let (start, _) = whole(caps)?;
        if !word_left_ok(text, start) || !(1..=31).contains(&group_num(caps, 3)?) {
            return None;
        }
        if let (Some(y), Some(m)) = (group_num(caps, 4), caps.get(4)) {
            if valid_year(y) && num_right_ok(text, m.end()) {
                return Some((start, m.end()));
            }
        }
        let (_, end) = group_span(caps, 1)?;
        let ok = starts_uppercase(caps, 2) && word_right_ok(text, end) && !followed_by_unit(p, text, end);
        ok.then_some((start, end))
    });
    // 1 March 2024 / 1st of March, 2024 / 01-Mar-2024 / 01-MAR-24; without a year only when
    // capitalised.
    let day_month = scan(&p.date_day_month, text, true, |caps| {
        let (start, _) = whole(caps)?;
        if !num_left_ok(text, start) || !(1..=31).contains(&group_num(caps, 2)?) {
            return None;
        }
        if let (Some(sep), Some(m)) = (caps.get(4), caps.get(5)) {
            let dashed = sep.as_str() == "-" && caps.get(1)?.as_str().contains('-');
            let year_ok = match m.as_str().len() {
                4 => group_num(caps, 5).is_some_and(valid_year),
                _ => dashed,
            };
            if year_ok && num_right_ok(text, m.end()) {
                return Some((start, m.end()));
            }
        }
        let (_, end) = group_span(caps, 1)?;
        (starts_uppercase(caps, 3) && word_left_ok(text, start) && word_right_ok(text, end)).then_some((start, end))
    });
    // March 2024 / Dec. 2023
    let month_year = scan(&p.date_month_year, text, true, |caps| {
        let (start, end) = whole(caps)?;
        let ok = valid_year(group_num(caps, 2)?) && word_left_ok(text, start) && num_right_ok(text, end);
        (ok && !followed_by_unit(p, text, end)).then_some((start, end))
    });
    // 2024年3月1日, 2024年3月
    let cjk = scan(&p.date_cjk, text, true, |caps| {
        let (start, end) = whole(caps)?;
        let day_ok = caps.get(3).is_none() || group_num(caps, 3).is_some_and(|d| (1..=31).contains(&d));
        let ok = valid_year(group_num(caps, 1)?) && (1..=12).contains(&group_num(caps, 2)?) && day_ok;
        (ok && num_left_ok(text, start)).then_some((start, end))
    });
    for spans in [iso, numeric, month_year_numeric, month_day, day_month, month_year, cjk] {
        push(found, spans, PhiKind::Date, RANK_DATE);
    }
}

fn find_mrns(p: &Patterns, text: &str, found: &mut Vec<Candidate>) {
    // "MRN: A1234567", "Medical record no. 123456", "acct #1234567", "ID 1234567"
    let labelled = scan(&p.mrn_labelled, text, true, |caps| {
        let (start, _) = whole(caps)?;
        let (id_start, id_end) = group_span(caps, 1)?;
        (word_left_ok(text, start) && num_right_ok(text, id_end)).then_some((id_start, id_end))
    });
    push(found, labelled, PhiKind::Mrn, RANK_MRN_LABELLED);
    // A bare run of 7+ digits that is not part of a decimal, a 1,234,567 group or a quantity.
    let bare = scan(&p.mrn_bare, text, false, |caps| {
        let (start, end) = whole(caps)?;
        let decimal_before = matches!(prev_char(text, start), Some('.' | '+'));
        let group_after =
            next_char(text, end) == Some(',') && next_char(text, end + 1).is_some_and(|c| c.is_ascii_digit());
        let ok = !decimal_before
            && !group_after
            && num_left_ok(text, start)
            && num_right_ok(text, end)
            && !followed_by_unit(p, text, end);
        ok.then_some((start, end))
    });
    push(found, bare, PhiKind::Mrn, RANK_MRN_BARE);
    // US social security numbers (123-45-6789) are ids too.
    let ssn = scan(&p.ssn, text, true, |caps| {
        let (start, end) = whole(caps)?;
        (num_left_ok(text, start) && num_right_ok(text, end)).then_some((start, end))
    });
    push(found, ssn, PhiKind::Mrn, RANK_MRN_BARE);
}

fn find_ages(p: &Patterns, text: &str, found: &mut Vec<Candidate>) {
    // "92 years old", "92-year-old", "95 yo", "95 y/o", "90 years of age": the number only.
    let phrase = scan(&p.age_phrase, text, true, |caps| {
        let (start, end) = whole(caps)?;
        let ok = group_num(caps, 1)? >= 90 && num_left_ok(text, start) && word_right_ok(text, end);
        ok.then(|| group_span(caps, 1)).flatten()
    });
    // "age 95", "aged 101", "age: 92"
    let labelled = scan(&p.age_labelled, text, true, |caps| {
        let (start, _) = whole(caps)?;
        let (n_start, n_end) = group_span(caps, 1)?;
        let ok = group_num(caps, 1)? >= 90 && word_left_ok(text, start) && num_right_ok(text, n_end);
        (ok && !followed_by_unit(p, text, n_end)).then_some((n_start, n_end))
    });
    push(found, phrase, PhiKind::AgeOver89, RANK_AGE);
    push(found, labelled, PhiKind::AgeOver89, RANK_AGE);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub(text: &str) -> Scrubbed {
        Scrubber::default().scrub(text)
    }

    /// (kind, original text) of every replacement, checking the invariants on the way.
    fn found<'t>(original: &'t str, s: &Scrubbed) -> Vec<(PhiKind, &'t str)> {
        check_invariants(original, s);
        s.replacements.iter().map(|r| (r.kind, &original[r.original_start..r.original_end])).collect()
    }

    fn found_in(text: &str) -> Vec<(PhiKind, String)> {
        let s = scrub(text);
        found(text, &s).into_iter().map(|(k, t)| (k, t.to_string())).collect()
    }

    fn assert_found(text: &str, kind: PhiKind, expected: &str) {
        let got = found_in(text);
        assert_eq!(got, vec![(kind, expected.to_string())], "in {text:?}");
    }

    fn assert_untouched(text: &str) {
        let s = scrub(text);
        assert_eq!(found(text, &s), vec![], "in {text:?}");
        assert_eq!(s.text, text);
    }

    /// Placeholders where the replacements say, the original everywhere else, counts that add
    /// up, and an offset map that lands on character boundaries.
    fn check_invariants(original: &str, s: &Scrubbed) {
        let mut rebuilt = String::new();
        let mut last = 0;
        let mut last_scrubbed = 0;
        for r in &s.replacements {
            assert!(r.original_start >= last && r.original_start < r.original_end);
            assert!(r.scrubbed_start >= last_scrubbed);
            rebuilt.push_str(&original[last..r.original_start]);
            assert_eq!(rebuilt.len(), r.scrubbed_start);
            rebuilt.push_str(r.kind.placeholder());
            assert_eq!(rebuilt.len(), r.scrubbed_end);
            assert_eq!(&s.text[r.scrubbed_start..r.scrubbed_end], r.kind.placeholder());
            last = r.original_end;
            last_scrubbed = r.scrubbed_end;
        }
        rebuilt.push_str(&original[last..]);
        assert_eq!(rebuilt, s.text);
        assert_eq!(s.counts.values().sum::<usize>(), s.replacements.len());
        for kind in PhiKind::ALL {
            assert_eq!(s.count(kind), s.replacements.iter().filter(|r| r.kind == kind).count());
        }
        assert_eq!(s.to_original(s.text.len()), original.len());
        for (i, _) in s.text.char_indices() {
            let o = s.to_original(i);
            assert!(original.is_char_boundary(o) && o <= original.len());
        }
    }

    #[test]
    fn dates_in_every_listed_format() {
        for (text, date) in [
            ("seen on 2024-03-01 in clinic", "2024-03-01"),
            ("seen on 2024/03/01.", "2024/03/01"),
            ("admitted 2024-03-01T14:30:00Z for", "2024-03-01T14:30:00Z"),
            ("DOB: 03/01/2024", "03/01/2024"),
            ("on 3/1/24, pain", "3/1/24"),
            ("on 1 March 2024 she", "1 March 2024"),
            ("on March 1, 2024 she", "March 1, 2024"),
            ("on Mar 1st 2024 she", "Mar 1st 2024"),
            ("on Sept. 3, 2024 she", "Sept. 3, 2024"),
            ("on the 1st of March, 2024 she", "1st of March, 2024"),
            ("on 01.03.2024 she", "01.03.2024"),
            ("on 01-MAR-24 she", "01-MAR-24"),
            ("on 01-Mar-2024 she", "01-Mar-2024"),
            ("x-ray 3 Mar-24 ok", "3 Mar"),
            ("last seen March 2024", "March 2024"),
            ("last seen dec 2023.", "dec 2023"),
            ("last seen 03/2024.", "03/2024"),
            ("follow up on March 12.", "March 12"),
            ("surgery on 3 March, recovered", "3 March"),
            ("on 31/12/2023 (day first)", "31/12/2023"),
        ] {
            assert_found(text, PhiKind::Date, date);
        }
    }

    #[test]
    fn dates_not_taken_from_clinical_numbers() {
        for text in [
            "bp 150/90, pulse 72",
            "BP 120/80 mmHg",
            "pain 3/10 today",
            "strength 5/5/5 bilaterally",
            "GCS E4/V5/M6",
            "titrate 10-20-40 mg",
            "version 1.2.24 of the form",
            "13/13/2024 is not a date",
            "2024-13-01 is not a date",
            "she may 5 times a day",
            "he will mar 3 tiles",
            "May 5 mg",
            "in 2024 she",
            "ratio 1/2000 mL",
            "ICD E11.22, Z79.4",
        ] {
            assert_untouched(text);
        }
    }

    #[test]
    fn phones_us_and_international() {
        for (text, phone) in [
            ("call 555-123-4567 today", "555-123-4567"),
            ("call (555) 123-4567 today", "(555) 123-4567"),
            ("call (555)123-4567.", "(555)123-4567"),
            ("call 555.123.4567.", "555.123.4567"),
            ("call 1-555-123-4567.", "1-555-123-4567"),
            ("call +1 (555) 123-4567.", "+1 (555) 123-4567"),
            ("call +44 20 7946 0958 now", "+44 20 7946 0958"),
            ("call +44 (0)20 7946 0958 now", "+44 (0)20 7946 0958"),
            ("call +33 1 23 45 67 89 now", "+33 1 23 45 67 89"),
            ("tel: 555 123 4567", "555 123 4567"),
            ("Tel 020 7946 0958.", "020 7946 0958"),
            ("Phone #: 5551234567", "5551234567"),
            ("Phone (cell): 555-1234", "555-1234"),
            ("Mobile no. 07700 900123", "07700 900123"),
            ("Call +44 20 7946 0958 20 mg", "+44 20 7946 0958"),
        ] {
            assert_found(text, PhiKind::Phone, phone);
        }
        let text = "Patient phone: 555-123-4567.";
        let s = scrub(text);
        assert_eq!(s.text, "Patient phone: [PHONE].");
        let r = s.replacements[0];
        assert_eq!(&text[r.original_start..r.original_end], "555-123-4567");
        assert_eq!(&s.text[r.scrubbed_start..r.scrubbed_end], "[PHONE]");
    }

    #[test]
    fn phones_not_taken_from_clinical_numbers() {
        for text in [
            "doses 250 500 1000 mg",
            "pH 7.35 7.40 7.38",
            "+1.5 cm",
            "phone call in 2 days",
            "NDC 0002-3227-30",
            "555-1234 alone is too short to tell",
        ] {
            assert_untouched(text);
        }
    }

    #[test]
    fn fax_needs_a_fax_label() {
        assert_found("Fax: 555-123-4567", PhiKind::Fax, "555-123-4567");
        assert_found("fax no. +44 20 7946 0958", PhiKind::Fax, "+44 20 7946 0958");
        assert_found("Facsimile (555) 765-4321", PhiKind::Fax, "(555) 765-4321");
        let text = "Tel 555-123-4567, Fax 555-765-4321";
        let s = scrub(text);
        assert_eq!(found(text, &s), vec![(PhiKind::Phone, "555-123-4567"), (PhiKind::Fax, "555-765-4321")]);
        assert_eq!(s.text, "Tel [PHONE], Fax [FAX]");
        // "faxed" is not a label.
        assert_found("faxed 555-123-4567", PhiKind::Phone, "555-123-4567");
        // With Fax off a fax number is still a phone; with both off it stays.
        let no_fax = Scrubber::new(ScrubOptions::default().without(PhiKind::Fax));
        assert_eq!(no_fax.scrub("Fax: 555-123-4567").text, "Fax: [PHONE]");
        let neither = Scrubber::new(ScrubOptions::default().without(PhiKind::Fax).without(PhiKind::Phone));
        assert_eq!(neither.scrub("Fax: 555-123-4567").text, "Fax: 555-123-4567");
    }

    #[test]
    fn emails() {
        assert_found(
            "write to john.smith+notes@mail.example.org.",
            PhiKind::Email,
            "john.smith+notes@mail.example.org",
        );
        assert_found("(j_doe@hospital.co.uk)", PhiKind::Email, "j_doe@hospital.co.uk");
        assert_untouched("email me @ noon");
        assert_untouched("a@b is not an address");
        assert_untouched("ratio 2@3.5");
    }

    #[test]
    fn urls() {
        assert_found(
            "see https://portal.example.com/p?id=12345678&x=1.",
            PhiKind::Url,
            "https://portal.example.com/p?id=12345678&x=1",
        );
        assert_found("(see http://example.com/a_(b))", PhiKind::Url, "http://example.com/a_(b)");
        assert_found("see (http://example.com/a).", PhiKind::Url, "http://example.com/a");
        assert_found("visit www.example.org/patients, then", PhiKind::Url, "www.example.org/patients");
        assert_found("visit WWW.Example.COM", PhiKind::Url, "WWW.Example.COM");
        assert_untouched("www. is not a url, nor is http:// alone");
        assert_untouched("e.g. example text");
    }

    #[test]
    fn mrn_labelled_and_bare() {
        for (text, id) in [
            ("MRN: A1234567", "A1234567"),
            ("MRN 123456", "123456"),
            ("mrn#00123456.", "00123456"),
            ("MR# 1234567", "1234567"),
            ("Medical record number: 98765432", "98765432"),
            ("Record No. 7654321", "7654321"),
            ("Acct #: 12345678", "12345678"),
            ("Account Number 1234567890", "1234567890"),
            ("Patient ID: AB-123456", "AB-123456"),
            ("ID 654321", "654321"),
            ("ref 12345678 on file", "12345678"),
            ("SSN 123-45-6789.", "123-45-6789"),
        ] {
            assert_found(text, PhiKind::Mrn, id);
        }
        for text in [
            "page 123456 of the chart",
            "MRN pending",
            "platelets 1,250,000",
            "value 1234567.89",
            "value 0.1234567",
            "viral load 1200000 copies/mL",
            "give 1000000 units",
            "code 123456 is six digits without a label",
            "Lot 12345678A",
            "ID: 12345",
            "range 123-45-67890",
        ] {
            assert_untouched(text);
        }
    }

    #[test]
    fn ages_over_89_only() {
        for (text, age) in [
            ("a 92 years old woman", "92"),
            ("a 92-year-old woman", "92"),
            ("a 101 year old man", "101"),
            ("95 yo M with", "95"),
            ("95yo with", "95"),
            ("95 y/o with", "95"),
            ("95 y.o. with", "95"),
            ("90 years of age", "90"),
            ("age 95", "95"),
            ("Age: 97,", "97"),
            ("aged 101", "101"),
        ] {
            assert_found(text, PhiKind::AgeOver89, age);
        }
        let s = scrub("a 92-year-old woman");
        assert_eq!(s.text, "a [AGE>89]-year-old woman");
        for text in ["a 89-year-old woman", "age 45", "aged 89", "65 yo F", "page 95", "stage 95", "for 95 years"] {
            assert_untouched(text);
        }
    }

    #[test]
    fn names_case_insensitive_whole_words() {
        let scrubber =
            Scrubber::default().with_names(["Ann", "Ann  Smith", "O'Brien", "José", "王伟", "", " x "]).unwrap();
        assert_eq!(scrubber.name_count(), 5);
        let text = "ann and ANN SMITH saw Ann-Marie; annual review. Dr o'brien and JOSÉ. 患者王伟今天. Joanne.";
        let s = scrubber.scrub(text);
        assert_eq!(
            found(text, &s),
            vec![
                (PhiKind::Name, "ann"),
                (PhiKind::Name, "ANN SMITH"),
                (PhiKind::Name, "Ann"),
                (PhiKind::Name, "o'brien"),
                (PhiKind::Name, "JOSÉ"),
                (PhiKind::Name, "王伟"),
            ]
        );
        assert_eq!(
            s.text,
            "[NAME] and [NAME] saw [NAME]-Marie; annual review. Dr [NAME] and [NAME]. 患者[NAME]今天. Joanne."
        );
        assert_eq!(s.count(PhiKind::Name), 6);
        // Regex syntax in a name is literal.
        let odd = Scrubber::default().with_names(["a.b", "(x)", "c++"]).unwrap();
        assert_eq!(odd.scrub("axb a.b (x) c++ c").text, "axb [NAME] [NAME] [NAME] c");
        // Names only with Name on; Debug shows no names.
        let off = Scrubber::new(ScrubOptions::default().without(PhiKind::Name)).with_names(["Ann"]).unwrap();
        assert_eq!(off.scrub("Ann").text, "Ann");
        assert!(!format!("{scrubber:?}").contains("Ann"));
        // with_names adds to the list.
        let more = Scrubber::default().with_names(["Ann"]).unwrap().with_names(["Bob", "ann"]).unwrap();
        assert_eq!(more.name_count(), 2);
        assert_eq!(more.scrub("Ann, Bob").text, "[NAME], [NAME]");
    }

    #[test]
    fn many_names_compile() {
        let names: Vec<String> = (0..5000).map(|i| format!("Name{i}x")).collect();
        let scrubber = Scrubber::default().with_names(&names).unwrap();
        assert_eq!(scrubber.scrub("saw name4999X and Name12x").text, "saw [NAME] and [NAME]");
    }

    #[test]
    fn clinical_numbers_survive() {
        let text = "BP 150/90, 120/80 mmHg, HR 88, T 37.8 C, SpO2 97% RA. Metformin 500 mg BID, \
                    oxycodone 5 mg q4h prn, HbA1c 7.2%, LDL 130 mg/dL, Na 138, K 4.1, INR 2.5, \
                    BMI 31.2, pain 3/10, EF 55-60%, GCS 15, E11.22 and I10, CPT 99213, \
                    WBC 12.5 x 10^9/L, platelets 250,000, NS 0.9% 1000 mL over 8 h, age 45, \
                    a 67-year-old, G2P1, T2DM, 1.5 L, 20/20 vision, 2 x 500mg, at 10:30.";
        assert_untouched(text);
    }

    #[test]
    fn counts_and_a_full_note() {
        let text = "Ann Smith, 92 y/o F, MRN: A1234567, seen 03/01/2024 and 2024-03-08. \
                    Tel (555) 123-4567, fax 555-765-4321, ann@example.com, https://x.example.com/a. \
                    BP 150/90, metformin 500 mg.";
        let scrubber = Scrubber::default().with_names(["Ann Smith"]).unwrap();
        let s = scrubber.scrub(text);
        assert_eq!(
            s.text,
            "[NAME], [AGE>89] y/o F, MRN: [MRN], seen [DATE] and [DATE]. \
             Tel [PHONE], fax [FAX], [EMAIL], [URL]. BP 150/90, metformin 500 mg."
        );
        let expected: BTreeMap<PhiKind, usize> = [
            (PhiKind::Date, 2),
            (PhiKind::Phone, 1),
            (PhiKind::Fax, 1),
            (PhiKind::Email, 1),
            (PhiKind::Url, 1),
            (PhiKind::Mrn, 1),
            (PhiKind::AgeOver89, 1),
            (PhiKind::Name, 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(s.counts, expected);
        assert_eq!(s.total(), 9);
        check_invariants(text, &s);
        let json = serde_json::to_value(&s.counts).unwrap();
        assert_eq!(json["age_over_89"], 1);
        assert_eq!(json["date"], 2);
        assert_eq!(serde_json::to_string(&PhiKind::AgeOver89).unwrap(), "\"age_over_89\"");
        for kind in PhiKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        // Only the kinds asked for.
        let dates_only = Scrubber::new(ScrubOptions::only([PhiKind::Date])).scrub(text);
        assert_eq!(dates_only.counts.keys().copied().collect::<Vec<_>>(), vec![PhiKind::Date]);
        assert_eq!(dates_only.count(PhiKind::Date), 2);
        let options: ScrubOptions = serde_json::from_str(r#"{"kinds": ["date", "age_over_89"]}"#).unwrap();
        assert_eq!(options, ScrubOptions::only([PhiKind::Date, PhiKind::AgeOver89]));
    }

    #[test]
    fn overlaps_earliest_then_longest_never_twice() {
        let scrubber = Scrubber::default().with_names(["john", "example"]).unwrap();
        // The e-mail starts with the name and is longer: one [EMAIL].
        let text = "mail john@example.com now";
        let s = scrubber.scrub(text);
        assert_eq!(found(text, &s), vec![(PhiKind::Email, "john@example.com")]);
        // The URL starts first and holds a bare id: one [URL].
        let text = "https://example.com/12345678";
        assert_eq!(found(text, &scrubber.scrub(text)), vec![(PhiKind::Url, text)]);
        // A labelled MRN and the bare-digit rule cover the same span: one [MRN].
        assert_found("MRN 12345678", PhiKind::Mrn, "12345678");
        // A date with a year beats the same date without it.
        assert_found("March 1, 2024", PhiKind::Date, "March 1, 2024");
        // Placeholders are never scanned again.
        let s = scrub("[DATE] 2024-03-01 [PHONE]");
        assert_eq!(s.text, "[DATE] [DATE] [PHONE]");
        assert_eq!(s.total(), 1);
    }

    #[test]
    fn offsets_map_back_to_the_original() {
        let text = "Seen 2024-03-01 by Ann, call 555-123-4567 or ann@example.com.";
        let s = Scrubber::default().with_names(["Ann"]).unwrap().scrub(text);
        assert_eq!(s.text, "Seen [DATE] by [NAME], call [PHONE] or [EMAIL].");
        let r = s.replacements[2];
        assert_eq!(&text[r.original_start..r.original_end], "555-123-4567");
        for r in &s.replacements {
            assert_eq!(s.to_original(r.scrubbed_start), r.original_start);
            assert_eq!(s.to_original(r.scrubbed_start + 3), r.original_start);
            assert_eq!(s.to_original(r.scrubbed_end), r.original_end);
            assert_eq!(s.to_original_span(r.scrubbed_start, r.scrubbed_end), (r.original_start, r.original_end));
            // A token inside a placeholder ("DATE" of "[DATE]") covers the whole original span.
            assert_eq!(
                s.to_original_span(r.scrubbed_start + 1, r.scrubbed_end - 1),
                (r.original_start, r.original_end)
            );
        }
        // Unreplaced text maps to the same text.
        let word = |t: &str, w: &str| t.find(w).map(|i| (i, i + w.len())).unwrap();
        for w in ["Seen ", " by ", ", call ", " or ", "."] {
            let (a, b) = word(&s.text, w);
            let (oa, ob) = s.to_original_span(a, b);
            assert_eq!(&text[oa..ob], w);
        }
        // A span across a placeholder covers the original in between.
        let (a, b) = (s.text.find("by").unwrap(), s.text.find(", call").unwrap());
        let (oa, ob) = s.to_original_span(a, b);
        assert_eq!(&text[oa..ob], "by Ann");
        assert_eq!(s.to_original_span(4, 4), (4, 4));
        assert_eq!(s.to_original(s.text.len()), text.len());
        let none = scrub("nothing here");
        assert_eq!(none.to_original(7), 7);
        assert_eq!(none.to_original_span(0, 7), (0, 7));
    }

    #[test]
    fn unicode_around_matches() {
        let text = "Patiënt é né le 2024-03-01 à 10h; µg dose 5 µg; 电话555-123-4567，邮箱 zoé@x.fr; \
                    日期 2024年3月1日; 92岁; café 95-year-old; 网址https://例子.cn/a，谢谢";
        let s = scrub(text);
        assert_eq!(
            found(text, &s),
            vec![
                (PhiKind::Date, "2024-03-01"),
                (PhiKind::Phone, "555-123-4567"),
                (PhiKind::Email, "zoé@x.fr"),
                (PhiKind::Date, "2024年3月1日"),
                (PhiKind::AgeOver89, "92"),
                (PhiKind::AgeOver89, "95"),
                (PhiKind::Url, "https://例子.cn/a"),
            ]
        );
        assert_eq!(
            s.text,
            "Patiënt é né le [DATE] à 10h; µg dose 5 µg; 电话[PHONE]，邮箱 [EMAIL]; \
             日期 [DATE]; [AGE>89]岁; café [AGE>89]-year-old; 网址[URL]，谢谢"
        );
        let r = s.replacements[1];
        assert_eq!(&text[r.original_start..r.original_end], "555-123-4567");
        assert_eq!(s.to_original(r.scrubbed_end), r.original_end);
        assert_eq!(&text[s.to_original(r.scrubbed_end)..][..3], "，");
    }

    #[test]
    fn unicode_neighbours_are_word_characters() {
        // A letter of any script glued to a number makes it part of a word; CJK punctuation and
        // spaces do not.
        assert_untouched("é555-123-4567");
        assert_found("（555-123-4567）", PhiKind::Phone, "555-123-4567");
        assert_found("日期：2024-03-01。", PhiKind::Date, "2024-03-01");
        assert_found("µ 12345678 µ", PhiKind::Mrn, "12345678");
        assert_found("见 www.example.cn。", PhiKind::Url, "www.example.cn");
        let s = scrub("ñ 03/01/2024 ñ");
        assert_eq!(s.text, "ñ [DATE] ñ");
        assert_eq!(s.to_original(s.text.len() - 2), "ñ 03/01/2024 ".len());
    }

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn fuzz_random_bytes_and_fragments_never_panic() {
        let scrubber = Scrubber::default().with_names(["Ann", "王伟", "José Smith"]).unwrap();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..400 {
            let bytes: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
            let text = String::from_utf8_lossy(&bytes);
            check_invariants(&text, &scrubber.scrub(&text));
        }
        // Fragments that sit near the patterns' edges, glued together at random.
        let fragments = [
            "2024",
            "-",
            "/",
            ".",
            "03",
            "1",
            "12",
            "31",
            "March",
            "mar",
            "May",
            " ",
            ",",
            "st",
            "of",
            "T10:30",
            "+",
            "44",
            "(555)",
            "555",
            "123",
            "4567",
            "fax",
            "tel",
            ":",
            "#",
            "MRN",
            "ID",
            "A",
            "1234567",
            "@",
            "john",
            "example",
            "com",
            "http://",
            "www.",
            "age",
            "95",
            "yo",
            "y/o",
            "-year-old",
            "years",
            "old",
            "mg",
            "%",
            "é",
            "µ",
            "王伟",
            "，",
            "Ann",
            "ann",
            "\n",
            ")",
            "(",
            "0958",
            "20",
            "7946",
            "e",
            "x",
        ];
        for _ in 0..3000 {
            let text: String = (0..rng.below(24)).map(|_| fragments[rng.below(fragments.len())]).collect();
            let s = scrubber.scrub(&text);
            check_invariants(&text, &s);
            for r in &s.replacements {
                assert_eq!(s.to_original_span(r.scrubbed_start, r.scrubbed_end), (r.original_start, r.original_end));
            }
        }
    }

    #[test]
    fn long_pathological_inputs_finish() {
        let scrubber = Scrubber::default().with_names(["Ann"]).unwrap();
        for text in [
            "1".repeat(50_000),
            "1-".repeat(20_000),
            "a@".repeat(20_000),
            "555-123-4567".repeat(5_000),
            "http://".repeat(10_000),
            "age 95 ".repeat(5_000),
            "é1/".repeat(10_000),
        ] {
            check_invariants(&text, &scrubber.scrub(&text));
        }
    }
}

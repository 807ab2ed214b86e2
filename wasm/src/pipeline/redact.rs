//! Redact: entity spans → a copy of the note with each span replaced by `[LABEL]`, and a
//! count per label. The removed text is never kept: not in the result, not in a message.

use std::collections::BTreeMap;

use serde::Serialize;

/// A replaced span: byte offsets into the original note, and into the redacted copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redaction {
    pub label: String,
    pub start: usize,
    pub end: usize,
    pub redacted_start: usize,
    pub redacted_end: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Redacted {
    pub text: String,
    pub redactions: Vec<Redaction>,
    /// Spans replaced per label (after overlapping spans were merged).
    pub counts: BTreeMap<String, usize>,
}

/// Replaces `spans` (byte ranges of `text`, any order, possibly overlapping) with `[LABEL]`.
/// Overlapping or touching spans merge into one, labelled by the span that starts first
/// (the longer one on a tie). Spans outside the text or off a character boundary are
/// widened to the nearest boundaries inside it, so nothing of a partly covered character stays.
pub fn redact(text: &str, mut spans: Vec<(usize, usize, String)>) -> Redacted {
    for span in &mut spans {
        span.1 = span.1.min(text.len());
        span.0 = span.0.min(span.1);
        while !text.is_char_boundary(span.0) {
            span.0 -= 1;
        }
        while !text.is_char_boundary(span.1) {
            span.1 += 1;
        }
    }
    spans.retain(|s| s.0 < s.1);
    spans.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut merged: Vec<(usize, usize, String)> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.0 <= last.1 => last.1 = last.1.max(span.1),
            _ => merged.push(span),
        }
    }
    let mut out = Redacted { text: String::with_capacity(text.len()), ..Default::default() };
    let mut at = 0;
    for (start, end, label) in merged {
        out.text.push_str(&text[at..start]);
        let redacted_start = out.text.len();
        out.text.push('[');
        out.text.push_str(&label);
        out.text.push(']');
        *out.counts.entry(label.clone()).or_insert(0) += 1;
        out.redactions.push(Redaction { label, start, end, redacted_start, redacted_end: out.text.len() });
        at = end;
    }
    out.text.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: usize, end: usize, label: &str) -> (usize, usize, String) {
        (start, end, label.to_string())
    }

    #[test]
    fn replaces_merges_and_counts() {
        let text = "Zoë Smith seen 3/4/2024 at Mercy, call 555-1234.";
        let at = |s: &str| (text.find(s).unwrap(), text.find(s).unwrap() + s.len());
        let [name, date, hospital, phone] = ["Zoë Smith", "3/4/2024", "Mercy", "555-1234"].map(at);
        let got = redact(
            text,
            vec![
                span(phone.0, phone.1, "PHONE"),
                span(name.0, name.1, "NAME"),
                span(date.0, date.1, "DATE"),
                span(date.0 + 2, date.1, "DATE"),
                span(hospital.0, hospital.1, "HOSPITAL"),
            ],
        );
        assert_eq!(got.text, "[NAME] seen [DATE] at [HOSPITAL], call [PHONE].");
        assert_eq!(got.counts.get("DATE"), Some(&1), "the overlapping dates merged");
        assert_eq!(got.counts.values().sum::<usize>(), 4);
        for r in &got.redactions {
            assert_eq!(&got.text[r.redacted_start..r.redacted_end], format!("[{}]", r.label));
        }
    }

    #[test]
    fn widens_partial_characters_and_ignores_empty_spans() {
        // "ë" is bytes 2..4: a span ending inside it takes the whole character.
        let got = redact("Zoë x", vec![span(0, 3, "NAME"), span(4, 4, "X"), span(90, 99, "Y")]);
        assert_eq!(got.text, "[NAME] x");
        assert_eq!(got.redactions.len(), 1);
    }
}

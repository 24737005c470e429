//! Free text typed by an operator or sent by a bus: names, addresses, village names.
//!
//! Text is trimmed, non-empty, bounded, and holds no control characters, so it can go
//! into a log line, a receipt or an HTML page without surprises. SQL in a name is just
//! text: every store uses bound parameters.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest text field accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("isian kosong (empty text)")]
    Empty,
    #[error("isian terlalu panjang: {len} karakter, paling banyak {max} (text too long: {len} characters, at most {max})")]
    TooLong { len: usize, max: usize },
    #[error("isian memuat karakter kendali U+{0:04X} (text contains a control character)")]
    Control(u32),
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Text(String);

impl Text {
    pub fn parse(s: &str) -> Result<Self, TextError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(TextError::Empty);
        }
        let len = t.chars().count();
        if len > MAX_TEXT_CHARS {
            return Err(TextError::TooLong {
                len,
                max: MAX_TEXT_CHARS,
            });
        }
        if let Some(c) = t.chars().find(|c| c.is_control()) {
            return Err(TextError::Control(c as u32));
        }
        Ok(Text(t.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Text {
    type Error = TextError;
    fn try_from(s: String) -> Result<Self, TextError> {
        Text::parse(&s).map_err(crate::de_error::note)
    }
}
impl From<Text> for String {
    fn from(t: Text) -> String {
        t.0
    }
}
impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Whether `c` can change how the text around it is shown: direction overrides and
/// isolates (the "Trojan Source" characters) and invisible format characters.
pub fn is_deceptive(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// `s` made safe for a terminal or a log line: every control character (escape codes
/// included) and every [`is_deceptive`] character becomes U+FFFD, so a message from the
/// network can neither drive the operator's terminal nor hide what it says.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || is_deceptive(c) {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_defuses_escape_codes_and_direction_tricks() {
        assert_eq!(printable("ok \u{1b}[2J\u{7}"), "ok \u{FFFD}[2J\u{FFFD}");
        assert_eq!(printable("a\u{202E}b\u{9b}c"), "a\u{FFFD}b\u{FFFD}c");
        assert_eq!(printable("Ditolak: foto buram"), "Ditolak: foto buram");
    }
    #[test]
    fn rules() {
        assert_eq!(
            Text::parse("  Siti Aminah ").unwrap().as_str(),
            "Siti Aminah"
        );
        assert_eq!(Text::parse(" "), Err(TextError::Empty));
        assert!(matches!(Text::parse("a\u{0}b"), Err(TextError::Control(0))));
        assert!(matches!(Text::parse("a\nb"), Err(TextError::Control(10))));
        assert!(matches!(
            Text::parse(&"x".repeat(301)),
            Err(TextError::TooLong { .. })
        ));
        assert!(Text::parse("Robert'); DROP TABLE applications;--").is_ok());
    }
}
